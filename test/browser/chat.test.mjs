// Drives the chat page and the dashboard (package webui) in headless
// Chromium against a running cluster. Started by test/cluster
// (TestBrowserChatAndDashboard), which passes:
//   BACKPLANE_NODES        http://n1,http://n2,... (at least 3: n2 is killed and the rest keep a quorum)
//   BACKPLANE_PIDS         their process ids, same order
//   BACKPLANE_CONTROL      POST <it>/restart?node=N restarts node N and answers once it is ready
//   BACKPLANE_CHROMIUM     the Chromium executable (Debian's /usr/bin/chromium)
//   BACKPLANE_SCREENSHOTS  a directory for the screenshots
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

const nodes = (process.env.BACKPLANE_NODES || '').split(',').filter(Boolean);
const pids = (process.env.BACKPLANE_PIDS || '').split(',').map(Number);
const shots = process.env.BACKPLANE_SCREENSHOTS;
const control = process.env.BACKPLANE_CONTROL;
const WAIT = { timeout: 20_000 };

const hostOf = (url) => new URL(url).host;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// publish sends a chat message through the REST API, retrying while the
// cluster has no leader (503), and returns its index.
async function publish(base, name, text) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await fetch(`${base}/api/v1/hubs/chat`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ target: 'message', arguments: [name, text] }),
    });
    const body = await res.json();
    if (res.status === 202) return body.index;
    if (res.status !== 503 || Date.now() > deadline) throw new Error(`publish via ${base}: ${res.status} ${JSON.stringify(body)}`);
    await sleep(200);
  }
}

async function restartNode(i) {
  const res = await fetch(`${control}/restart?node=${i}`, { method: 'POST' });
  assert.equal(res.status, 200, `restart n${i}: ${await res.text()}`);
}

// messages lists the chat page's messages as {index, who, text, earlier}.
function messages(page) {
  return page.$$eval('#log li.msg', (lis) => lis.map((li) => ({
    index: Number(li.dataset.index),
    who: li.querySelector('.who').textContent,
    text: li.querySelector('.text').textContent,
    earlier: li.classList.contains('earlier'),
  })));
}

async function waitForMessage(page, text) {
  await page.locator('#log li.msg .text', { hasText: text }).first().waitFor(WAIT);
}

async function waitForState(page, state) {
  await page.waitForFunction((s) => document.getElementById('status').dataset.state === s, state, WAIT);
}

async function openChat(browser, base, name, errors) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  await page.goto(base + '/');
  await waitForState(page, 'connected');
  await page.fill('#name', name);
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => /committed as #\d+/.test(document.getElementById('sendStatus').textContent), null, WAIT);
  return Number((await page.textContent('#sendStatus')).match(/#(\d+)/)[1]);
}

// afterLine lists the messages shown after the resume line.
function afterLine(page) {
  return page.$$eval('#log li', (lis) => {
    const at = lis.findIndex((li) => li.matches('.sys.resume'));
    return lis.slice(at + 1).filter((li) => li.matches('.msg')).map((li) =>
      [Number(li.dataset.index), li.querySelector('.who').textContent, li.querySelector('.text').textContent]);
  });
}

async function waitForResume(page, replayed) {
  await page.waitForFunction((n) => document.querySelector('#log li.sys.resume')?.dataset.replayed === n, String(replayed), WAIT);
  return page.textContent('#log li.sys.resume');
}

async function assertNoDuplicates(page) {
  const indexes = (await messages(page)).map((m) => m.index);
  assert.equal(new Set(indexes).size, indexes.length, `no index shown twice: ${indexes}`);
  assert.equal(await page.getAttribute('#log', 'data-anomalies'), '0');
}

test('chat across nodes, node loss, switch and resume; dashboard', async () => {
  assert.ok(nodes.length === 3 && pids.length === 3, 'BACKPLANE_NODES and BACKPLANE_PIDS: 3 nodes');
  assert.ok(shots && control, 'BACKPLANE_SCREENSHOTS and BACKPLANE_CONTROL are set');
  const [n1, n2, n3] = nodes;
  const browser = await chromium.launch({
    executablePath: process.env.BACKPLANE_CHROMIUM || '/usr/bin/chromium',
    // Playwright gives each launch a fresh temporary profile (--user-data-dir).
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const pages = {};
  try {
    // 1. Alice on n1, Bob on n2 and Carol on n3 (separate browser
    //    contexts) see each other's messages.
    const a = await openChat(browser, n1, 'alice', errors);
    const b = await openChat(browser, n2, 'bob', errors);
    const c = await openChat(browser, n3, 'carol', errors);
    Object.assign(pages, { alice: a, bob: b, carol: c });
    for (const [page, id, base] of [[a, 'n1', n1], [b, 'n2', n2], [c, 'n3', n3]]) {
      await page.waitForFunction((want) => document.getElementById('status').textContent.startsWith(want),
        `connected to ${id} (${hostOf(base)})`, WAIT);
      assert.equal(await page.textContent('#nodeAddr'), hostOf(base));
    }
    const ia = await say(a, 'hello from alice on n1');
    await waitForMessage(b, 'hello from alice on n1');
    const ib = await say(b, 'hi alice, bob here on n2');
    await waitForMessage(a, 'hi alice, bob here on n2');
    await waitForMessage(c, 'hi alice, bob here on n2');
    assert.ok(ib > ia, `indexes ${ia} then ${ib}`);
    const lastB = Number(await b.getAttribute('#log', 'data-last'));
    assert.equal(lastB, ib, 'Bob has seen up to his own message');

    // 2. The dashboard on n1 lists every member and the leader.
    const info = await (await fetch(n1 + '/v1/info')).json();
    assert.ok(info.leader, 'the cluster has a leader');
    const dash = await (await browser.newContext({ viewport: { width: 1280, height: 760 } })).newPage();
    dash.on('pageerror', (e) => errors.push(`dashboard: ${e.message}`));
    await dash.goto(n1 + '/dashboard');
    for (const id of ['n1', 'n2', 'n3']) await dash.locator(`tr[data-member="${id}"][data-health="up"]`).waitFor(WAIT);
    await dash.waitForFunction((id) => document.getElementById('leader').textContent === id, info.leader, WAIT);

    // 3. Kill n2: Bob's page says it is disconnected; the dashboard shows n2 down.
    process.kill(pids[1], 'SIGKILL');
    await waitForState(b, 'disconnected');
    assert.match(await b.textContent('#status'), new RegExp(`^disconnected from n2 \\(${hostOf(n2)}\\).*last seen #${lastB}\\)`));
    await dash.locator('tr[data-member="n2"][data-health="down"]').waitFor(WAIT);
    await dash.waitForFunction(() => document.getElementById('health').dataset.up === '2', null, WAIT);

    // 4. Messages Bob misses while his node is down.
    const missed = [];
    for (let i = 1; i <= 3; i++) missed.push([await publish(n1, 'dave', `missed message ${i}`), 'dave', `missed message ${i}`]);
    await waitForMessage(a, 'missed message 3');
    await b.screenshot({ path: path.join(shots, 'chat-bob-disconnected.png') });
    await sleep(1500); // a few dashboard rate samples with n2 down
    await dash.screenshot({ path: path.join(shots, 'dashboard.png') });

    // 5. Bob switches to n1 and resumes after the last message he saw,
    //    with exactly the missed messages, each once.
    await b.fill('#switchAddr', hostOf(n1));
    await b.click('#switch button');
    await b.waitForURL((u) => u.host === hostOf(n1), WAIT);
    assert.equal(await waitForResume(b, 3),
      `switched node — resumed on n1 (${hostOf(n1)}) after #${lastB}, 3 missed messages replayed`);
    assert.equal(await b.locator('#log li.sys.resume').count(), 1);
    assert.equal(await b.inputValue('#name'), 'bob', 'the name moves with the page');
    await waitForState(b, 'connected');
    assert.deepEqual(await afterLine(b), missed);
    assert.ok((await messages(b)).some((m) => m.earlier && m.index === ib), 'the earlier conversation is shown for context');
    await assertNoDuplicates(b);

    // 6. Bob keeps chatting from n1.
    const back = await say(b, 'back, now on n1');
    await waitForMessage(a, 'back, now on n1');
    await waitForMessage(c, 'back, now on n1');
    await b.screenshot({ path: path.join(shots, 'chat-bob-resumed.png') });

    // 7. n2 comes back; then n3 goes down and comes back: Carol's page
    //    resumes by itself (EventSource, Last-Event-ID) and says so.
    await restartNode(2);
    await dash.locator('tr[data-member="n2"][data-health="up"]').waitFor(WAIT);
    const lastC = Number(await c.getAttribute('#log', 'data-last'));
    assert.equal(lastC, back);
    process.kill(pids[2], 'SIGKILL');
    await waitForState(c, 'disconnected');
    await dash.locator('tr[data-member="n3"][data-health="down"]').waitFor(WAIT);
    const missedC = [];
    for (let i = 1; i <= 2; i++) missedC.push([await publish(n1, 'dave', `while n3 was down ${i}`), 'dave', `while n3 was down ${i}`]);
    await restartNode(3);
    assert.equal(await waitForResume(c, 2),
      `reconnected — resumed on n3 (${hostOf(n3)}) after #${lastC}, 2 missed messages replayed`);
    await waitForState(c, 'connected');
    assert.deepEqual(await afterLine(c), missedC);
    await assertNoDuplicates(c);
    await dash.locator('tr[data-member="n3"][data-health="up"]').waitFor(WAIT);

    await assertNoDuplicates(a);
    await a.screenshot({ path: path.join(shots, 'chat-alice.png') });
    await c.screenshot({ path: path.join(shots, 'chat-carol-reconnected.png') });
    assert.deepEqual(errors, [], 'no script errors in the pages');
  } catch (e) {
    // What each page showed, to tell why.
    for (const [name, page] of Object.entries(pages)) {
      const shown = await page.evaluate(() => ({
        url: location.href,
        status: document.getElementById('status').textContent,
        log: [...document.querySelectorAll('#log li')].map((li) => li.textContent),
      })).catch((err) => ({ error: err.message }));
      console.log(`---- ${name}'s page:`, JSON.stringify(shown, null, 1));
    }
    throw e;
  } finally {
    await browser.close();
  }
});

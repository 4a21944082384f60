// Backplane chat: reads the hub "chat" over the native SSE stream
// (GET /v1/hubs/chat/stream, event id = message index) and publishes with
// the REST API (POST /api/v1/hubs/chat). It shows where it is connected
// (GET /v1/info) and, after a reconnect or a switch to another node, from
// which index it resumed and how many missed messages were replayed.
'use strict';
(() => {
  const HUB = 'chat';
  const TARGET = 'message';
  // A fresh page shows the messages among the last HISTORY indexes.
  const HISTORY = 200;
  const NAME_KEY = 'backplane.chat.name';

  const $ = (id) => document.getElementById(id);
  const logEl = $('log');
  const state = {
    last: 0,        // highest message index seen: the cursor
    anomalies: 0,   // messages that arrived twice or out of order (never expected)
    es: null,
    info: null,
    resume: null,   // the resume line being counted
    addrs: new Map(), // member id -> HTTP address, from every /v1/info so far
    blocked: false, // the node requires tokens
  };

  function node(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function scrollDown() { logEl.scrollTop = logEl.scrollHeight; }

  function setStatus(kind, stateName, text) {
    const s = $('status');
    s.className = 'status ' + kind;
    s.dataset.state = stateName;
    s.textContent = text;
  }

  function where() {
    const i = state.info;
    return i ? `${i.id} (${location.host})` : location.host;
  }

  // addSystem appends a centred system line and returns its text element.
  function addSystem(text, cls) {
    const li = node('li', 'sys' + (cls ? ' ' + cls : ''));
    const span = node('span', '', text);
    li.appendChild(span);
    logEl.appendChild(li);
    scrollDown();
    return span;
  }

  function setLast(index) {
    state.last = index;
    logEl.dataset.last = String(index);
    $('lastSeen').textContent = '#' + index;
  }

  function addMessage(m, earlier) {
    if (m.index <= state.last) {
      state.anomalies++;
      logEl.dataset.anomalies = String(state.anomalies);
      addSystem(`message #${m.index} arrived again or out of order (cursor #${state.last})`, 'err');
      return;
    }
    setLast(m.index);
    const args = Array.isArray(m.arguments) ? m.arguments : [];
    const chat = m.target === TARGET && args.length === 2 && typeof args[0] === 'string';
    const who = chat ? args[0] : m.target;
    const text = chat ? String(args[1]) : JSON.stringify(args);
    const li = node('li', 'msg' + (earlier ? ' earlier' : '') + (chat && who === $('name').value.trim() ? ' mine' : ''));
    li.dataset.index = String(m.index);
    li.append(node('span', 'idx', '#' + m.index), node('span', 'who', who), node('span', 'text', text),
      node('span', 'time', earlier ? '' : new Date().toLocaleTimeString()));
    logEl.appendChild(li);
    scrollDown();
    if (!earlier) countResumed(m.index);
  }

  // ---- resume lines: "resumed on n1 (127.0.0.1:8080) after #42, 3 missed messages replayed"

  function startResume(kind, from) {
    state.resume = { kind, from, bound: null, count: 0, early: [], span: addSystem('', 'resume') };
    renderResume();
  }

  // countResumed counts a message delivered after a resume. Messages up to
  // the log's end at reconnect time (bound) are the missed ones.
  function countResumed(index) {
    const r = state.resume;
    if (!r) return;
    if (r.bound === null) r.early.push(index);
    else if (index <= r.bound) r.count++;
    else return;
    renderResume();
  }

  function setResumeBound(last) {
    const r = state.resume;
    if (!r || r.bound !== null) return;
    r.bound = last;
    r.count += r.early.filter((i) => i <= last).length;
    r.early = [];
    renderResume();
  }

  function renderResume() {
    const r = state.resume;
    const head = r.kind === 'switch' ? 'switched node' : 'reconnected';
    const tail = r.bound === null ? 'counting missed messages…'
      : `${r.count} missed message${r.count === 1 ? '' : 's'} replayed`;
    r.span.textContent = `${head} — resumed on ${where()} after #${r.from}, ${tail}`;
    r.span.parentElement.dataset.from = String(r.from);
    r.span.parentElement.dataset.replayed = r.bound === null ? '' : String(r.count);
  }

  // ---- node identity

  async function refreshInfo() {
    const res = await fetch('/v1/info', { cache: 'no-store' });
    if (!res.ok) throw new Error(`GET /v1/info: ${res.status}`);
    const info = await res.json();
    state.info = info;
    for (const m of info.members || []) if (m.http_addr) state.addrs.set(m.id, m.http_addr);
    $('nodeId').textContent = info.id;
    $('nodeAddr').textContent = location.host;
    $('leader').textContent = info.leader || 'none known';
    renderMembers(info);
    return info;
  }

  function renderMembers(info) {
    const box = $('members');
    box.replaceChildren();
    for (const m of info.members || []) {
      const addr = m.http_addr || state.addrs.get(m.id);
      if (m.id === info.id || !addr) continue;
      const b = node('button', 'ghost', `${m.id} · ${addr}`);
      b.type = 'button';
      b.dataset.addr = addr;
      b.addEventListener('click', () => switchTo(addr));
      box.appendChild(b);
    }
  }

  // settle finds how far the log went while the page was away: the
  // leader's last_message (GET /v1/info, which the members' pages may read), or
  // this node's when it leads. A node that just restarted may not know
  // the leader yet, nor (its store being rebuilt from the log) its
  // address: the page remembers addresses from before, and waits up to 5 s.
  async function settle() {
    const leaderAddr = (info) => (info.leader === info.id ? location.host : state.addrs.get(info.leader));
    let info = await refreshInfo();
    for (const deadline = Date.now() + 5000; !(info.leader && leaderAddr(info)) && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 250));
      info = await refreshInfo();
    }
    let last = info.last_message;
    const addr = info.leader && leaderAddr(info);
    if (addr && addr !== location.host) {
      const res = await fetch(`${location.protocol}//${addr}/v1/info`, { cache: 'no-store' }).catch(() => null);
      if (res && res.ok) last = Math.max(last, (await res.json()).last_message);
    }
    return { info, last };
  }

  // openStream reads the hub after the cursor. dropped: this replaces a
  // stream that broke, so its opening is a resume.
  function openStream(after, dropped = false) {
    if (state.es) state.es.close();
    const es = new EventSource(`/v1/hubs/${HUB}/stream?after=${after}`);
    state.es = es;
    es.onopen = () => {
      // EventSource sends the last event id (= state.last) when it reconnects.
      if (dropped) startResume('reconnect', state.last);
      dropped = false;
      setStatus('ok', 'connected', `connected to ${where()}`);
      settle().then(({ info, last }) => {
        setResumeBound(last);
        setStatus('ok', 'connected', `connected to ${where()} · leader ${info.leader || 'none known'}`);
      }).catch(() => {});
    };
    es.onerror = () => {
      if (state.es !== es) return;
      dropped = true;
      if (es.readyState === EventSource.CLOSED) {
        // The server answered with an error status: EventSource gives up,
        // so start a new one from the cursor.
        setStatus('err', 'disconnected', `stream refused by ${where()}; retrying in 3 s (last seen #${state.last})`);
        setTimeout(() => { if (state.es === es) { openStream(state.last, true); } }, 3000);
        checkAccess();
        return;
      }
      setStatus('err', 'disconnected', `disconnected from ${where()} — reconnecting… (last seen #${state.last}). ` +
        'If the node is gone, switch to another one.');
    };
    es.onmessage = (ev) => {
      try { addMessage(JSON.parse(ev.data), false); } catch (e) { addSystem('unreadable event: ' + e.message, 'err'); }
    };
    es.addEventListener('reset', (ev) => {
      const oldest = JSON.parse(ev.data).reset.oldest;
      addSystem(`history trimmed by retention: messages before #${oldest} are gone; continuing from #${oldest}`, 'warn');
    });
  }

  // ---- publishing

  async function send(ev) {
    ev.preventDefault();
    const name = $('name').value.trim();
    const text = $('text').value;
    if (!name || !text.trim() || state.blocked) return;
    localStorage.setItem(NAME_KEY, name);
    const out = $('sendStatus');
    try {
      const res = await fetch(`/api/v1/hubs/${HUB}`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ target: TARGET, arguments: [name, text] }),
      });
      const body = await res.json().catch(() => ({}));
      if (res.status === 202) {
        $('text').value = '';
        out.textContent = `sent: committed as #${body.index}`;
      } else if (res.status === 401) {
        blockForTokens();
      } else {
        out.textContent = `not sent (${res.status}): ${body.error || res.statusText}`;
      }
    } catch (e) {
      out.textContent = `not sent: ${location.host} does not answer — switch to another node`;
    }
  }

  // checkAccess asks whether this node requires client tokens: the poll
  // endpoint answers 401 then, like the stream.
  async function checkAccess() {
    try {
      const res = await fetch(`/v1/hubs/${HUB}/poll?timeout=0`, { cache: 'no-store' });
      if (res.status === 401) blockForTokens();
      return res.status !== 401;
    } catch (e) {
      return true; // unreachable: the stream's own retries report it
    }
  }

  function blockForTokens() {
    state.blocked = true;
    if (state.es) { state.es.close(); state.es = null; }
    const n = $('notice');
    n.hidden = false;
    n.replaceChildren('This node requires access tokens (it runs with -access-key, -jwt-public-key or -jwks-file), ' +
      'and this demo page does not issue them. To try the chat, run a node without -access-key, e.g. ',
    node('span', 'mono', 'go run ./cmd/node'), '.');
    setStatus('warn', 'blocked', `${location.host} requires tokens: the demo chat cannot connect`);
    for (const id of ['text', 'sendButton']) $(id).disabled = true;
  }

  // ---- switching node: move the page there, resuming after state.last

  function normaliseAddr(raw) {
    const s = raw.trim().replace(/\/+$/, '');
    if (/^\d+$/.test(s)) return `${location.hostname}:${s}`;
    return s.replace(/^https?:\/\//, '');
  }

  async function switchTo(raw) {
    const addr = normaliseAddr(raw);
    if (!addr) return;
    const st = $('switchStatus');
    const url = `${location.protocol}//${addr}/?after=${state.last}&name=${encodeURIComponent($('name').value.trim())}`;
    st.textContent = `checking ${addr}…`;
    try {
      // no-cors: an opaque answer is enough to know the node is there.
      await fetch(`${location.protocol}//${addr}/v1/info`, { mode: 'no-cors', cache: 'no-store' });
    } catch (e) {
      st.textContent = `${addr} does not answer; try another node`;
      return;
    }
    if (state.es) { state.es.close(); state.es = null; }
    location.assign(url);
  }

  // ---- start

  async function loadContext(after) {
    // Earlier messages for context, up to the cursor; the stream brings the rest.
    const from = Math.max(0, after - HISTORY);
    const res = await fetch(`/v1/hubs/${HUB}/poll?after=${from}&timeout=0&limit=1000`, { cache: 'no-store' });
    if (!res.ok) return;
    const page = await res.json();
    for (const m of page.messages || []) if (m.index <= after) addMessage(m, true);
  }

  async function start() {
    const q = new URLSearchParams(location.search);
    const name = q.get('name') || localStorage.getItem(NAME_KEY) || 'guest-' + Math.floor(1000 + Math.random() * 9000);
    $('name').value = name;
    localStorage.setItem(NAME_KEY, name);
    $('send').addEventListener('submit', send);
    $('switch').addEventListener('submit', (ev) => { ev.preventDefault(); switchTo($('switchAddr').value); });
    $('nodeAddr').textContent = location.host;

    let info = null;
    try { info = await refreshInfo(); } catch (e) { /* the stream reports the node as down */ }
    if (!(await checkAccess())) return;
    const resumeAfter = /^\d+$/.test(q.get('after') || '') ? Number(q.get('after')) : null;
    history.replaceState(null, '', location.pathname); // a reload starts afresh
    if (resumeAfter !== null) {
      await loadContext(resumeAfter).catch(() => {});
      setLast(Math.max(state.last, resumeAfter));
      startResume('switch', resumeAfter);
      openStream(resumeAfter);
    } else {
      const after = info ? Math.max(0, info.last_message - HISTORY) : 0;
      addSystem(`joined ${where()} — showing recent messages (after #${after})`);
      setLast(after);
      openStream(after);
    }
    // Keep the leader and the member list current while connected.
    setInterval(() => {
      if (state.es && state.es.readyState === EventSource.OPEN) refreshInfo().catch(() => {});
    }, 5000);
    $('text').focus();
  }

  start();
})();

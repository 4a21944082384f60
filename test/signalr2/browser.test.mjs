// The jQuery SignalR 2 client (signalr 2.4.3, served from the npm package
// with jQuery, no CDN) in headless Chromium, through the generated proxy
// script /signalr/hubs. Each page is served by a balancer in front of the
// cluster (same origin for the page and /signalr) that prefers one node
// and skips it once it is down. Started by test/cluster
// (TestSignalR2Browser), which also passes BACKPLANE_CHROMIUM. This file
// kills the first node: run it on a cluster of its own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { nodes, pids, transports, token, send, sendRetry, balancer, run, jquerySource, signalrSource } from "./lib.mjs";

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>SignalR 2 on Backplane</title>
<script src="/lib/jquery.js"></script>
<script src="/lib/jquery.signalR.js"></script>
<script src="/signalr/hubs"></script>
</head><body><ul id="log"></ul><script>
window.received = [];
window.events = [];
window.startHub = function (hub, transport, accessToken) {
  var proxy = $.connection[hub];
  proxy.client.msg = function () {
    var args = Array.prototype.slice.call(arguments);
    window.received.push(args);
    $("<li>").text(JSON.stringify(args)).appendTo("#log");
  };
  $.connection.hub.qs = { access_token: accessToken };
  $.each(["reconnecting", "reconnected", "disconnected"], function (i, e) {
    $.connection.hub[e](function () { window.events.push(e); });
  });
  return new Promise(function (resolve, reject) {
    $.connection.hub.start({ transport: transport })
      .done(function () { resolve({ transport: $.connection.hub.transport.name, id: $.connection.hub.id }); })
      .fail(function (e) { reject(String(e)); });
  });
};
window.call = function (hub, method) {
  var args = Array.prototype.slice.call(arguments, 2);
  return new Promise(function (resolve, reject) {
    $.connection[hub].server[method].apply(null, args).done(resolve).fail(function (e) { reject(String(e)); });
  });
};
</script></body></html>`;

const files = {
  "/": { type: "text/html; charset=utf-8", body: page },
  "/lib/jquery.js": { type: "application/javascript", body: jquerySource },
  "/lib/jquery.signalR.js": { type: "application/javascript", body: signalrSource },
};

test("Chromium: pages on three nodes over each transport, in a group; REST and relay sends; a killed node's page resumes with every message once, in order", async () => {
  assert.equal(nodes.length, 3);
  const browser = await chromium.launch({
    executablePath: process.env.BACKPLANE_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const lbs = [];
  const hub = `browserHub${run}`;
  const h = hub.toLowerCase();
  try {
    const pages = [];
    for (let i = 0; i < 3; i++) {
      // Page i prefers node i; the balancer skips a node that is down.
      const lb = await balancer([...nodes.slice(i), ...nodes.slice(0, i)], "failover", files);
      lbs.push(lb);
      const ctx = await browser.newContext();
      const p = await ctx.newPage();
      const errors = [];
      p.on("pageerror", (e) => errors.push(String(e)));
      await p.goto(lb.url + "/");
      const user = `browser-${transports[i]}`;
      const started = await p.evaluate(([hub, t, tok]) => window.startHub(hub, t, tok), [hub, transports[i], token(user)]);
      assert.equal(started.transport, transports[i]);
      await p.evaluate(([hub]) => window.call(hub, "joinGroup", "room"), [hub]);
      pages.push({ p, user, id: started.id, transport: transports[i], errors });
    }
    const received = (pg) => pg.p.evaluate(() => window.received);
    const waitCount = (pg, n) =>
      pg.p.waitForFunction((n) => window.received.length >= n, n, { timeout: 30000 }).catch(async (e) => {
        throw new Error(`${pg.transport}: ${e.message}; received ${JSON.stringify(await received(pg))}, events ${JSON.stringify(await pg.p.evaluate(() => window.events))}`);
      });

    const want = [];
    await send(nodes[1], `/api/v1/hubs/${h}/groups/room`, "msg", "rest to room");
    want.push(["rest to room"]);
    const index = await pages[2].p.evaluate(([hub]) => window.call(hub, "sendToGroup", "room", "msg", "relay from long polling"), [hub]);
    assert.equal(typeof index, "number");
    want.push(["relay from long polling"]);
    for (const pg of pages) await waitCount(pg, want.length);

    // Node 0 dies; the WebSocket page (on node 0) resumes elsewhere.
    process.kill(pids[0], "SIGKILL");
    for (let i = 0; i < 10; i++) {
      await sendRetry(nodes[1 + (i % 2)], i % 2 ? `/api/v1/hubs/${h}` : `/api/v1/hubs/${h}/groups/room`, "msg", i);
      want.push([i]);
    }
    for (const pg of pages) {
      await waitCount(pg, want.length);
      assert.deepEqual(await received(pg), want, `${pg.transport} received every message once, in order`);
      assert.deepEqual(pg.errors, [], `${pg.transport}: no page errors`);
    }
    const events = await pages[0].p.evaluate(() => window.events);
    assert.ok(events.includes("reconnected") && !events.includes("disconnected"), `the WebSocket page's events: ${events}`);
    // The page shows what it received.
    assert.equal(await pages[0].p.locator("#log li").count(), want.length);
  } finally {
    await browser.close();
    for (const lb of lbs) await lb.close();
  }
});

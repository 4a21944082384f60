// Helpers for the ASP.NET SignalR 2 client tests. The Go test in
// test/cluster (signalr2_test.go) starts a three-node cluster of the built
// binary and runs these files with:
//   BACKPLANE_NODES       comma-separated base URLs of the nodes
//   BACKPLANE_ACCESS_KEY  the cluster's -access-key (tokens are signed with it)
//   BACKPLANE_PIDS        comma-separated process ids, in the same order
// Each client is the jQuery client signalr 2.4.3 (with jQuery) loaded into
// its own jsdom window whose page is served by the node (or proxy) it
// talks to, as a browser page would be.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { JSDOM, VirtualConsole } from "jsdom";
import { allRoles, recorder, restToken, spliceUpgrade, userToken } from "../clientlib/cluster.mjs";

export { nodes, pids, allRoles } from "../clientlib/cluster.mjs";

const require = createRequire(import.meta.url);
const EventSource = require("eventsource");
export const jquerySource = fs.readFileSync(require.resolve("jquery/dist/jquery.js"), "utf8");
export const signalrSource = fs.readFileSync(require.resolve("signalr/jquery.signalR.js"), "utf8");

export const transports = ["webSockets", "serverSentEvents", "longPolling"];

/** run names this run's hubs, so a suite may run again on the same cluster. */
export const run = Date.now().toString(36);

/** token is a client token for a user, granting roles. */
export function token(user, roles = allRoles, ttlSeconds = 600) {
  return userToken(user, roles, ttlSeconds);
}

/**
 * BrowserEventSource is the eventsource package's EventSource with two
 * things a browser's has: an error event seen by a listener is at its
 * target (eventPhase 2), which the jQuery client reads as "the stream
 * ended, reconnect through /reconnect" (the package's plain events have no
 * eventPhase, so the client would only log the error); and its own retry
 * waits 3 s, as Chrome's does, not 1 s (the jQuery client reconnects after
 * 2 s and counts on the EventSource not to beat it).
 */
function BrowserEventSource(url, init) {
  const es = new EventSource(url, init);
  es.reconnectInterval = 3000;
  const add = es.addEventListener.bind(es);
  es.addEventListener = (type, listener, ...rest) =>
    add(type, type !== "error" ? listener : (e) => {
      Object.defineProperty(e, "eventPhase", { value: 2, configurable: true });
      return listener.call(es, e);
    }, ...rest);
  return es;
}
BrowserEventSource.CONNECTING = 0;
BrowserEventSource.OPEN = 1;
BrowserEventSource.CLOSED = 2;

/** page is a jsdom window at url with jQuery and the SignalR 2 client loaded. */
export function page(url) {
  const virtualConsole = new VirtualConsole();
  const dom = new JSDOM("<!doctype html><html><head></head><body></body></html>", {
    url: url + "/",
    runScripts: "outside-only",
    virtualConsole,
  });
  const w = dom.window;
  w.EventSource = BrowserEventSource; // jsdom has none; the client checks window.EventSource
  w.eval(jquerySource);
  w.eval(signalrSource);
  return w;
}

/**
 * connect starts a jQuery SignalR 2 client on baseUrl (a node or a proxy)
 * with a proxy for hub that records every "msg" call as its arguments.
 */
export async function connect(baseUrl, { transport = "webSockets", user = "anon", hub = "chatHub", roles = allRoles, log = false } = {}) {
  const w = page(baseUrl);
  const $ = w.jQuery;
  const conn = $.hubConnection(baseUrl + "/signalr", { useDefaultPath: false, logging: log });
  conn.qs = { access_token: token(user, roles) };
  const proxy = conn.createHubProxy(hub);
  const events = [];
  const { received, record, waitFor } = recorder(() => `; events ${JSON.stringify(events)}`);
  proxy.on("msg", (...args) => record(JSON.parse(JSON.stringify(args)))); // out of the window's realm
  conn.reconnecting(() => events.push("reconnecting"));
  conn.reconnected(() => events.push("reconnected"));
  conn.disconnected(() => events.push("disconnected"));
  conn.error((e) => events.push("error: " + (e && e.message)));
  const logs = [];
  conn.log = (m) => logs.push(m); // kept for the error below
  conn.logging = true;
  await within(promise(conn.start({ transport })), 15000, () => `start over ${transport} on ${baseUrl}: ${logs.join("\n")}`);
  /** invoke calls a hub method and resolves with its result. */
  const invoke = (method, ...args) => promise(proxy.invoke(method, ...args));
  const stop = () => {
    conn.stop(true, true); // async: a synchronous XHR would block this process, balancers included
    w.close();
  };
  return { w, conn, proxy, received, waitFor, invoke, stop, events, logs, user };
}

/** within rejects with what() if p has not settled after ms. */
export function within(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what()}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** promise turns a jQuery deferred into a promise. */
export function promise(d) {
  return new Promise((resolve, reject) => d.done(resolve).fail(reject));
}

/** until polls pred every 25 ms until it holds or ms pass. */
export async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** rest calls the server REST API of a node with a token for its URL. */
export async function rest(baseUrl, method, path, body) {
  const url = baseUrl + path;
  const tok = restToken(url);
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${tok}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? safeJSON(text) : undefined };
}

function safeJSON(t) {
  try {
    return JSON.parse(t);
  } catch {
    return undefined;
  }
}

/** send publishes target(...args) to a REST path and returns its index. */
export async function send(baseUrl, path, target, ...args) {
  const r = await rest(baseUrl, "POST", path, { target, arguments: args });
  if (r.status !== 202) throw new Error(`POST ${path}: ${r.status} ${r.text}`);
  return r.json.index;
}

/**
 * balancer starts an HTTP proxy on 127.0.0.1 in front of the targets (base
 * URLs), tunnelling WebSocket upgrades too. "roundRobin" sends each request
 * to the next target in turn (a balancer without affinity); "failover"
 * sends every request to the first target that accepts a connection. A
 * target that refuses the connection (a killed node) is skipped. served
 * records which target took each request path. files maps paths the
 * balancer answers itself to {type, body} (a page and its scripts).
 */
export async function balancer(targets, mode = "roundRobin", files = {}) {
  let next = 0;
  const served = [];
  const order = () => {
    const start = mode === "roundRobin" ? next++ % targets.length : 0;
    return targets.map((_, i) => new URL(targets[(start + i) % targets.length]));
  };
  const server = http.createServer(async (req, res) => {
    const file = files[req.url.split("?")[0]];
    if (file) {
      res.writeHead(200, { "Content-Type": file.type, "Cache-Control": "no-store" });
      res.end(file.body);
      return;
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const tryTarget = (list) => {
      const t = list[0];
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        served.push({ path: req.url.split("?")[0], target: t.origin });
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
        r.on("close", () => {
          if (!r.complete) res.destroy();
        });
      });
      up.on("error", (e) => {
        if (e.code === "ECONNREFUSED" && list.length > 1) return tryTarget(list.slice(1));
        if (!res.headersSent) {
          res.writeHead(502, { "Content-Type": "text/plain" });
          res.end(String(e));
        } else res.destroy();
      });
      res.on("close", () => up.destroy());
      up.end(body);
    };
    tryTarget(order());
  });
  server.on("upgrade", (req, socket, head) => {
    const tryTarget = (list) => {
      const t = list[0];
      const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers });
      up.on("upgrade", (r, upSocket, upHead) => {
        served.push({ path: req.url.split("?")[0], target: t.origin });
        spliceUpgrade(socket, head, r, upSocket, upHead);
        socket.on("close", () => upSocket.destroy());
        upSocket.on("close", () => socket.destroy());
      });
      up.on("response", (r) => socket.end(`HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n\r\n`));
      up.on("error", (e) => {
        if (e.code === "ECONNREFUSED" && list.length > 1) return tryTarget(list.slice(1));
        socket.destroy();
      });
      up.end();
    };
    tryTarget(order());
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  const sockets = new Set();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  // close stops listening and cuts every connection, tunnels included.
  const close = async () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  return { url, served, close };
}

/**
 * sendRetry is send with an Idempotency-Key, retried on 503 (a leader
 * election) until it is committed once.
 */
export async function sendRetry(baseUrl, path, target, ...args) {
  const key = crypto.randomUUID();
  const deadline = Date.now() + 20000;
  for (;;) {
    const url = baseUrl + path;
    const tok = restToken(url);
    let res;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${tok}`, "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify({ target, arguments: args }),
      });
    } catch (e) {
      res = { status: 0, text: async () => String(e) };
    }
    const text = await res.text();
    if (res.status === 202) return JSON.parse(text).index;
    if (Date.now() > deadline) throw new Error(`POST ${path}: ${res.status} ${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

const require = createRequire(import.meta.url);
const EventSource = require("eventsource");
const jquerySource = fs.readFileSync(require.resolve("jquery/dist/jquery.js"), "utf8");
const signalrSource = fs.readFileSync(require.resolve("signalr/jquery.signalR.js"), "utf8");

export const nodes = (process.env.BACKPLANE_NODES || "").split(",").filter(Boolean);
export const pids = (process.env.BACKPLANE_PIDS || "").split(",").filter(Boolean).map(Number);
const accessKey = process.env.BACKPLANE_ACCESS_KEY || "";
if (nodes.length === 0) throw new Error("BACKPLANE_NODES is not set: run these tests through go test ./test/cluster");

export const transports = ["webSockets", "serverSentEvents", "longPolling"];

/** Every relay permission: with -access-key the relay policy is "roles". */
export const allRoles = [
  "backplane.sendToAll",
  "backplane.sendToGroup",
  "backplane.joinLeaveGroup",
  "backplane.sendToUser",
  "backplane.sendToConnection",
];

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");

/** hs256 signs claims with the cluster's access key. */
function hs256(claims) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** token is a client token for a user, granting roles. */
export function token(user, roles = allRoles, ttlSeconds = 600) {
  return hs256({ nameid: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds, role: roles });
}

/** page is a jsdom window at url with jQuery and the SignalR 2 client loaded. */
export function page(url) {
  const virtualConsole = new VirtualConsole();
  const dom = new JSDOM("<!doctype html><html><head></head><body></body></html>", {
    url: url + "/",
    runScripts: "outside-only",
    virtualConsole,
  });
  const w = dom.window;
  w.EventSource = EventSource; // jsdom has none; the client checks window.EventSource
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
  const received = [];
  const waiters = [];
  proxy.on("msg", (...args) => {
    received.push(args);
    for (const f of [...waiters]) f();
  });
  const events = [];
  conn.reconnecting(() => events.push("reconnecting"));
  conn.reconnected(() => events.push("reconnected"));
  conn.disconnected(() => events.push("disconnected"));
  conn.error((e) => events.push("error: " + (e && e.message)));
  await promise(conn.start({ transport }));
  /** waitFor resolves once pred(received) holds, or rejects at the deadline. */
  const waitFor = (pred, what, ms = 10000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pred(received)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve(received);
        }
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(check), 1);
        reject(new Error(`timed out waiting for ${what}; received ${JSON.stringify(received)}; events ${JSON.stringify(events)}`));
      }, ms);
      waiters.push(check);
      check();
    });
  /** invoke calls a hub method and resolves with its result. */
  const invoke = (method, ...args) => promise(proxy.invoke(method, ...args));
  const stop = () => {
    conn.stop(false, true);
    w.close();
  };
  return { w, conn, proxy, received, waitFor, invoke, stop, events, user };
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
  const tok = hs256({ aud: url, exp: Math.floor(Date.now() / 1000) + 600 });
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
 * roundRobin starts an HTTP proxy on 127.0.0.1 that sends each request to
 * the next of the targets in turn (a balancer without affinity) and
 * tunnels WebSocket upgrades the same way. It records which target served
 * each request path.
 */
export async function roundRobin(targets) {
  let next = 0;
  const served = [];
  const pick = () => new URL(targets[next++ % targets.length]);
  const server = http.createServer((req, res) => {
    const t = pick();
    served.push({ path: req.url.split("?")[0], target: t.origin });
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502, { "Content-Type": "text/plain" });
      res.end(String(e));
    });
    req.pipe(up);
    res.on("close", () => up.destroy());
  });
  server.on("upgrade", (req, socket, head) => {
    const t = pick();
    served.push({ path: req.url.split("?")[0], target: t.origin });
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers });
    up.on("upgrade", (r, upSocket, upHead) => {
      let head2 = `HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n`;
      for (let i = 0; i < r.rawHeaders.length; i += 2) head2 += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`;
      socket.write(head2 + "\r\n");
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.pipe(socket).pipe(upSocket);
      socket.on("error", () => upSocket.destroy());
      upSocket.on("error", () => socket.destroy());
    });
    up.on("response", (r) => {
      socket.end(`HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n\r\n`);
    });
    up.on("error", () => socket.destroy());
    up.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () =>
    new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    });
  return { url, served, close };
}

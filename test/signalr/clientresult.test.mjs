// Client results and streams over the versioned REST API (2024-12-01):
// POST .../connections/{id}/:invoke answered by the official client's
// connection.on(...) handler, and .../streams/{id}/:send and :complete,
// always called on a node other than the one holding the connection.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { nodes, connect } from "./lib.mjs";

const accessKey = process.env.BACKPLANE_ACCESS_KEY || "";
const open = [];
after(async () => { await Promise.all(open.map((c) => c.conn.stop().catch(() => {}))); });

function restToken(url) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ aud: url, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** api calls a 2024-12-01 route on a node; returns {status, body, code}. */
async function api(baseUrl, path, body, query = "") {
  const url = `${baseUrl}${path}`;
  const full = `${url}?api-version=2024-12-01${query}`;
  const res = await fetch(full, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${restToken(url)}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, code: res.headers.get("x-ms-error-code") };
}

/** recordMessages keeps every hub message the client parses. */
function recordMessages(conn) {
  const seen = [];
  const p = conn._protocol;
  const parse = p.parseMessages.bind(p);
  p.parseMessages = (input, logger) => {
    const msgs = parse(input, logger);
    seen.push(...msgs);
    return msgs;
  };
  return seen;
}

async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const combos = [
  { transport: "WebSockets", msgpack: false },
  { transport: "WebSockets", msgpack: true },
  { transport: "LongPolling", msgpack: false },
  { transport: "WebSockets", msgpack: false, stateful: true }, // through the connection's stream in the log
];

for (const combo of combos) {
  const name = `${combo.transport}/${combo.msgpack ? "messagepack" : "json"}${combo.stateful ? "/stateful" : ""}`;
  test(`:invoke through another node returns the handler's result over ${name}`, async () => {
    const c = await connect(nodes[0], { ...combo, user: `invokee-${name}` });
    open.push(c);
    c.conn.on("add", (a, b) => ({ sum: a + b, who: "client" }));
    c.conn.on("fail", () => { throw new Error("nope from the handler"); });
    c.conn.on("later", (x) => new Promise((resolve) => setTimeout(() => resolve(`late ${x}`), 200)));
    c.conn.on("never", () => new Promise(() => {}));
    const path = `/api/hubs/chat/connections/${c.conn.connectionId}/:invoke`;

    let r = await api(nodes[1], path, { target: "add", arguments: [2, 3] });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.deepEqual(r.body, { result: { sum: 5, who: "client" } });

    r = await api(nodes[2], path, { target: "later", arguments: ["x"] });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.deepEqual(r.body, { result: "late x" });

    r = await api(nodes[1], path, { target: "fail", arguments: [] });
    assert.equal(r.status, 400, JSON.stringify(r));
    assert.equal(r.code, "ClientInvocationError");
    assert.match(r.body.message, /nope from the handler/);

    // No handler: the client answers with an error of its own.
    r = await api(nodes[2], path, { target: "nohandler", arguments: [] });
    assert.equal(r.status, 400, JSON.stringify(r));
    assert.match(r.body.message, /didn't provide a result/);

    const start = Date.now();
    r = await api(nodes[1], path, { target: "never", arguments: [] }, "&timeout=1");
    assert.equal(r.status, 408, JSON.stringify(r));
    assert.equal(r.code, "RequestTimeout");
    assert.ok(Date.now() - start < 10000, "the 1 s timeout took too long");

    // The connection still works after all of that.
    r = await api(nodes[2], path, { target: "add", arguments: [40, 2] });
    assert.deepEqual(r.body, { result: { sum: 42, who: "client" } });
  });
}

for (const stateful of [false, true]) test(`stream items sent through other nodes arrive in order, then the completion${stateful ? " (stateful reconnect)" : ""}`, async () => {
  const c = await connect(nodes[0], { user: `streamer${stateful ? "-stateful" : ""}`, stateful });
  open.push(c);
  const seen = recordMessages(c.conn);
  const base = `/api/hubs/chat/connections/${c.conn.connectionId}/streams`;
  for (let i = 0; i < 20; i++) {
    const r = await api(nodes[1 + (i % 2)], `${base}/st1/:send`, { i });
    assert.equal(r.status, 202, JSON.stringify(r));
  }
  let r = await api(nodes[2], `${base}/st1/:complete`);
  assert.equal(r.status, 202, JSON.stringify(r));
  await until(() => seen.some((m) => m.type === 3 && m.invocationId === "st1"), "the stream's completion");
  const mine = seen.filter((m) => m.invocationId === "st1");
  assert.deepEqual(mine.filter((m) => m.type === 2).map((m) => m.item.i), [...Array(20).keys()]);
  assert.equal(mine[mine.length - 1].type, 3, "the completion comes last");
  assert.equal(mine[mine.length - 1].error, undefined);

  r = await api(nodes[1], `${base}/st2/:complete`, undefined, "&reason=gave%20up");
  assert.equal(r.status, 202, JSON.stringify(r));
  await until(() => seen.some((m) => m.type === 3 && m.invocationId === "st2"), "the error completion");
  assert.equal(seen.find((m) => m.invocationId === "st2").error, "gave up");

  r = await api(nodes[1], `/api/hubs/chat/connections/nobody/streams/s/:send`, 1);
  assert.equal(r.status, 404, JSON.stringify(r));
});

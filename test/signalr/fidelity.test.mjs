// What @microsoft/signalr 10 sees where Backplane used to differ from
// ASP.NET Core SignalR (issue 13), on a three-node cluster.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import * as signalR from "@microsoft/signalr";
import { Subject } from "@microsoft/signalr";
import { nodes, connect, token, transports, allRoles } from "./lib.mjs";

const accessKey = process.env.BACKPLANE_ACCESS_KEY || "";

/** longClaimToken puts the user id in .NET's long nameidentifier claim only. */
function longClaimToken(user) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": user,
    exp: Math.floor(Date.now() / 1000) + 600,
    role: allRoles,
  });
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

for (const transport of Object.keys(transports)) {
  test(`${transport}: the caller's own copy arrives before the completion (30 of 30)`, async () => {
    const c = await connect(nodes[1], { transport, user: `own-${transport}` });
    try {
      for (let i = 0; i < 30; i++) {
        if (i % 2 === 0) await c.conn.invoke("SendToAll", "msg", "all", i);
        else await c.conn.invoke("SendToConnection", c.conn.connectionId, "msg", "mine", i);
        assert.equal(c.received.at(-1)?.[1], i, `call ${i}: own copy before the completion`);
      }
    } finally {
      await c.conn.stop();
    }
  });
}

test("hub names are case-insensitive: /hubs/Chat gets REST and relay sends to chat", async () => {
  const upper = await connect(nodes[0], { hub: "Chat", user: "upper" });
  const lower = await connect(nodes[1], { hub: "chat", user: "lower" });
  try {
    await lower.conn.invoke("SendToAll", "msg", "relay");
    await upper.waitFor((r) => r.some((m) => m[0] === "relay"), "the relay send on /hubs/chat");
  } finally {
    await upper.conn.stop();
    await lower.conn.stop();
  }
});

test("a hub name with '-' is routed as ASP.NET routes it: /hubs/Chat-Room and /hubs/chat-room are one hub", async () => {
  const upper = await connect(nodes[0], { hub: "Chat-Room", user: "dash-upper" });
  const lower = await connect(nodes[2], { hub: "chat-room", user: "dash-lower" });
  const other = await connect(nodes[1], { hub: "chatroom", user: "no-dash" });
  try {
    await lower.conn.invoke("SendToAll", "msg", "dashed");
    await upper.waitFor((r) => r.some((m) => m[0] === "dashed"), "the relay send on /hubs/chat-room");
    await other.conn.invoke("SendToAll", "msg", "undashed");
    // Committed after "undashed": once it is here, "undashed" would be too.
    await lower.conn.invoke("SendToAll", "msg", "marker");
    await upper.waitFor((r) => r.some((m) => m[0] === "marker"), "the marker");
    assert.deepEqual(upper.received.map((m) => m[0]), ["dashed", "marker"], "chatroom is another hub");
  } finally {
    await upper.conn.stop();
    await lower.conn.stop();
    await other.conn.stop();
  }
});

test("an upload stream gets ASP.NET's error completion, and nothing is sent", async () => {
  const c = await connect(nodes[2], { user: "uploader" });
  try {
    const subject = new Subject();
    const p = c.conn.invoke("SendToAll", "msg", subject);
    subject.next(1);
    subject.complete();
    await assert.rejects(p, /Client sent 1 stream\(s\), Hub method expects 0/);
    await assert.rejects(c.conn.invoke("NoSuchMethod"), /Unknown hub method 'NoSuchMethod'/);
    await c.conn.invoke("SendToAll", "msg", "after");
    assert.deepEqual(c.received, [["after"]], "the refused upload delivered nothing");
  } finally {
    await c.conn.stop();
  }
});

test("an access token that expires does not close the connection", async () => {
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${nodes[0]}/hubs/chat`, { transport: signalR.HttpTransportType.LongPolling, accessTokenFactory: () => token("short", 2) })
    .configureLogging(signalR.LogLevel.None)
    .build();
  let closedWith = "open";
  conn.onclose((err) => (closedWith = err));
  await conn.start();
  try {
    const started = Date.now();
    while (Date.now() - started < 4500) {
      await conn.invoke("SendToAll", "msg", "tick");
      await new Promise((r) => setTimeout(r, 50)); // under the 50 invocations/s per connection limit
    }
    assert.equal(closedWith, "open", "the connection is still open past its first token's expiry");
    assert.equal(conn.state, signalR.HubConnectionState.Connected);
  } finally {
    await conn.stop();
  }
});

test("the long nameidentifier claim is the user id", async () => {
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${nodes[1]}/hubs/chat`, { accessTokenFactory: () => longClaimToken("dotnet-user") })
    .configureLogging(signalR.LogLevel.None)
    .build();
  const got = [];
  conn.on("msg", (...a) => got.push(a));
  await conn.start();
  const sender = await connect(nodes[2], { user: "sender" });
  try {
    await sender.conn.invoke("SendToUser", "dotnet-user", "msg", "to dotnet-user");
    const deadline = Date.now() + 10000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got, [["to dotnet-user"]]);
  } finally {
    await conn.stop();
    await sender.conn.stop();
  }
});

test("later requests need a token of the connection's user: 401", async () => {
  const neg = await fetch(`${nodes[0]}/hubs/chat/negotiate?negotiateVersion=1`, { method: "POST", headers: { Authorization: `Bearer ${token("alice")}` } });
  assert.equal(neg.status, 200);
  const { connectionToken } = await neg.json();
  const url = `${nodes[1]}/hubs/chat?id=${encodeURIComponent(connectionToken)}`; // through another node
  for (const auth of [undefined, `Bearer ${token("mallory")}`, `Bearer ${token("alice", -60)}`]) {
    const headers = auth ? { Authorization: auth } : {};
    assert.equal((await fetch(url, { headers })).status, 401, `poll with ${auth ? "a bad token" : "no token"}`);
    assert.equal((await fetch(url, { method: "POST", headers, body: "{}" })).status, 401, "send");
  }
  const own = { Authorization: `Bearer ${token("alice")}` };
  assert.equal((await fetch(url, { headers: own })).status, 200, "alice's first poll");
  assert.equal((await fetch(url, { method: "DELETE", headers: own })).status, 202, "alice's DELETE");
});

// @aspnet/signalr 1.1.4 against a three-node cluster: JSON on every
// transport, MessagePack on WebSockets and long polling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nodes, connect } from "./lib.mjs";

const combos = [
  ["WebSockets", false],
  ["ServerSentEvents", false],
  ["LongPolling", false],
  ["WebSockets", true],
  ["LongPolling", true],
];

for (const [transport, msgpack] of combos) {
  const name = `${transport} ${msgpack ? "MessagePack" : "JSON"}`;
  test(`1.1.4 ${name}: relay methods across nodes, own copy before the completion`, async () => {
    const a = await connect(nodes[0], { transport, msgpack, user: `a-${name}` });
    const b = await connect(nodes[1], { transport, msgpack, user: `b-${name}` });
    try {
      const index = await a.conn.invoke("SendToAll", "msg", "hello", 1);
      assert.ok(Number(index) > 0, `SendToAll's completion is the message index, got ${index}`);
      assert.deepEqual(a.received.at(-1), ["hello", 1], "the caller's own copy arrived before the completion");
      await b.waitFor((r) => r.some((m) => m[0] === "hello"), "b to get a's SendToAll");
      await b.conn.invoke("JoinGroup", "room");
      await a.conn.invoke("SendToGroup", "room", "msg", "to room");
      await b.waitFor((r) => r.some((m) => m[0] === "to room"), "b to get the group send");
      await b.conn.invoke("SendToUser", a.user, "msg", "to user a");
      await a.waitFor((r) => r.some((m) => m[0] === "to user a"), "a to get the user send");
      for (let i = 0; i < 10; i++) {
        await a.conn.invoke("SendToAll", "msg", "seq", i);
        assert.deepEqual(a.received.at(-1), ["seq", i], `own copy ${i} before its completion`);
      }
      await assert.rejects(a.conn.invoke("NoSuchMethod"), /Unknown hub method 'NoSuchMethod'/);
    } finally {
      await a.conn.stop();
      await b.conn.stop();
    }
  });
}

test("1.1.4: hub names are case-insensitive", async () => {
  const upper = await connect(nodes[0], { hub: "Chat", user: "upper" });
  const lower = await connect(nodes[2], { hub: "chat", user: "lower" });
  try {
    await lower.conn.invoke("SendToAll", "msg", "case");
    await upper.waitFor((r) => r.some((m) => m[0] === "case"), "the /hubs/Chat client to get a send on /hubs/chat");
  } finally {
    await upper.conn.stop();
    await lower.conn.stop();
  }
});

for (const msgpack of [false, true]) {
  test(`1.1.4 LongPolling ${msgpack ? "MessagePack" : "JSON"}: stop() after a server-side close does not reject`, async () => {
    const c = await connect(nodes[1], { transport: "LongPolling", msgpack, user: "big" });
    // An oversize message: the server closes the connection with an error.
    c.conn.send("SendToAll", "msg", "x".repeat(64 * 1024)).catch(() => {});
    const err = await c.closed;
    assert.ok(err, "the server's Close carries an error");
    await c.conn.stop(); // the DELETE after the Close: 202, nothing rejects
  });
}

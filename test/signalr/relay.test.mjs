// The official client, over every transport and hub protocol, with clients
// on different nodes: relay methods and REST sends reach the right clients.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { nodes, connect, publish, rest, eventually } from "./lib.mjs";

const combos = [
  { transport: "WebSockets", msgpack: false },
  { transport: "WebSockets", msgpack: true },
  { transport: "ServerSentEvents", msgpack: false },
  { transport: "LongPolling", msgpack: false },
  { transport: "LongPolling", msgpack: true },
];
const open = [];
after(async () => { await Promise.all(open.map((c) => c.conn.stop().catch(() => {}))); });

for (const combo of combos) {
  const name = `${combo.transport}/${combo.msgpack ? "messagepack" : "json"}`;
  test(`relay and REST sends reach clients on every node over ${name}`, async () => {
    const tag = `${combo.transport}-${combo.msgpack ? "mp" : "js"}`;
    const group = `room-${tag}`;
    // One client per node; the first two join the group.
    const clients = [];
    for (let i = 0; i < nodes.length; i++) {
      const c = await connect(nodes[i], { ...combo, user: `user-${tag}-${i}` });
      open.push(c);
      clients.push(c);
    }
    const [a, b, c] = clients;
    await a.conn.invoke("JoinGroup", group);
    await b.conn.invoke("joingroup", group); // method names match case-insensitively

    const seen = (client, marker) => client.waitFor((r) => r.some((args) => args[0] === marker), `${marker} on ${client.user}`);
    const notSeen = (client, marker) => assert.ok(!client.received.some((args) => args[0] === marker), `${client.user} must not get ${marker}`);

    // SendToAll from a client on node 1 reaches everyone, the sender too.
    const i1 = await a.conn.invoke("SendToAll", "msg", `all-${tag}`, { n: 1, s: "é✓" });
    assert.equal(typeof i1, "number", "the completion carries the message index");
    await Promise.all(clients.map((x) => seen(x, `all-${tag}`)));
    for (const x of clients) {
      const args = x.received.find((r) => r[0] === `all-${tag}`);
      assert.deepEqual(args[1], { n: 1, s: "é✓" }, "arguments arrive unchanged");
    }

    // SendToGroup from node 3 (not a member) reaches only the members.
    const i2 = await c.conn.invoke("SendToGroup", group, "msg", `group-${tag}`);
    assert.ok(i2 > i1, `indexes increase: ${i2} after ${i1}`);
    await Promise.all([seen(a, `group-${tag}`), seen(b, `group-${tag}`)]);

    // SendToUser and SendToConnection reach exactly their target, across nodes.
    await a.conn.invoke("SendToUser", c.user, "msg", `user-${tag}`);
    await seen(c, `user-${tag}`);
    await c.conn.invoke("SendToConnection", b.conn.connectionId, "msg", `conn-${tag}`);
    await seen(b, `conn-${tag}`);

    // A REST send to the group through node 3 reaches the members.
    await publish(nodes[2], "chat", `groups/${group}`, { target: "msg", arguments: [`rest-${tag}`] });
    await Promise.all([seen(a, `rest-${tag}`), seen(b, `rest-${tag}`)]);

    // After LeaveGroup, group sends no longer reach b.
    await b.conn.invoke("LeaveGroup", group);
    await c.conn.invoke("SendToGroup", group, "msg", `after-leave-${tag}`);
    await seen(a, `after-leave-${tag}`);
    // A broadcast after it, seen by b, proves b would have had the group message by now.
    await c.conn.invoke("SendToAll", "msg", `fence-${tag}`);
    await seen(b, `fence-${tag}`);

    notSeen(c, `group-${tag}`);
    notSeen(c, `rest-${tag}`);
    notSeen(a, `user-${tag}`);
    notSeen(b, `user-${tag}`);
    notSeen(a, `conn-${tag}`);
    notSeen(c, `conn-${tag}`);
    notSeen(b, `after-leave-${tag}`);

    // Every client saw its messages in index order, each exactly once.
    for (const x of clients) {
      const markers = x.received.map((r) => r[0]);
      assert.equal(new Set(markers).size, markers.length, `${x.user} got a duplicate: ${markers}`);
    }
    await Promise.all(clients.map((x) => x.conn.stop()));
  });
}

test("an unknown hub method fails the invocation with a clear error", async () => {
  const c = await connect(nodes[0], {});
  open.push(c);
  await assert.rejects(c.conn.invoke("NoSuchMethod", 1), /Unknown hub method 'NoSuchMethod'/);
  await assert.rejects(c.conn.invoke("SendToGroup"), /group name is missing/);
  await c.conn.stop();
});

test("a REST close of a connection held by another node closes the client; existence checks follow", async () => {
  const c = await connect(nodes[0], { user: "closable" });
  open.push(c);
  const id = c.conn.connectionId;
  const path = `/api/v1/hubs/chat/connections/${encodeURIComponent(id)}`;
  for (const n of nodes) {
    await eventually(() => rest(n, "HEAD", path), (s) => s === 200, `the connection to exist on ${n}`);
  }
  await eventually(() => rest(nodes[1], "HEAD", "/api/v1/hubs/chat/users/closable"), (s) => s === 200, "its user to exist");
  const closed = new Promise((resolve) => c.conn.onclose(resolve));
  assert.equal(await rest(nodes[2], "DELETE", path), 200);
  const err = await closed;
  assert.equal(err, undefined, "a REST close is a normal close, not an error");
  for (const n of nodes) {
    await eventually(() => rest(n, "HEAD", path), (s) => s === 404, `the connection to be gone on ${n}`);
  }
});

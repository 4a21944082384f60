// A node dies: its SignalR 2 clients reconnect, through a balancer that
// skips the dead node, to another node with their messageId (a log index)
// and receive exactly what they missed, in order, with no duplicate. Their
// groups are still theirs. This file kills the first node: run it on a
// cluster of its own.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { nodes, pids, transports, connect, sendRetry, rest, balancer, until, run } from "./lib.mjs";

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

test("clients whose node is killed resume on another node with their messageId: every message once, in order", async () => {
  // Every client talks to nodes[0] while it lives, then to the next.
  const lb = await balancer(nodes, "failover");
  cleanup.push(lb.close);
  const hub = `failover${run}`;
  const clients = [];
  for (const transport of transports) {
    const c = await connect(lb.url, { transport, hub, user: `fo-${transport}` });
    cleanup.push(async () => c.stop());
    await c.invoke("JoinGroup", "fo");
    clients.push(c);
  }
  assert.ok(lb.served.every((s) => s.target === new URL(nodes[0]).origin), "everything went to the first node");
  const want = [];
  for (let i = 0; i < 5; i++) {
    await sendRetry(nodes[1], `/api/v1/hubs/${hub}/groups/fo`, "msg", i);
    want.push([i]);
  }
  for (const c of clients) await c.waitFor((r) => r.length === 5, `the first five on ${c.conn.transport.name}`);

  process.kill(pids[0], "SIGKILL");
  // While the clients are cut off (and the cluster may elect a leader),
  // more messages: to the group, to each user and to the hub.
  for (let i = 5; i < 20; i++) {
    const path = i % 3 === 0 ? `/api/v1/hubs/${hub}` : `/api/v1/hubs/${hub}/groups/fo`;
    await sendRetry(nodes[1 + (i % 2)], path, "msg", i);
    want.push([i]);
  }
  for (const c of clients) {
    await c.waitFor((r) => r.length >= want.length, `every message on ${c.conn.transport.name}`, 40000);
  }
  // A last group send: the groups survived the move.
  await sendRetry(nodes[2], `/api/v1/hubs/${hub}/groups/fo`, "msg", "last");
  want.push(["last"]);
  for (const c of clients) {
    await c.waitFor((r) => r.length >= want.length, `the last group message on ${c.conn.transport.name}`);
    assert.deepEqual(c.received, want, `${c.conn.transport.name} received every message once, in order`);
  }
  // The streaming clients noticed and reconnected; none of them stopped.
  for (const c of clients) {
    assert.ok(!c.events.includes("disconnected"), `${c.conn.transport.name} events: ${c.events}`);
    if (c.conn.transport.name !== "longPolling") {
      assert.ok(c.events.includes("reconnected"), `${c.conn.transport.name} events: ${c.events}; log:\n${c.logs.join("\n")}`);
    }
  }
  // The surviving nodes served the reconnects, and still record each
  // connection, now held by one of them.
  assert.ok(lb.served.some((s) => s.path.endsWith("/reconnect") || s.path.endsWith("/poll")));
  for (const c of clients) {
    for (const n of nodes.slice(1)) {
      const r = await rest(n, "HEAD", `/api/v1/hubs/${hub}/connections/${encodeURIComponent(c.conn.id)}`);
      assert.equal(r.status, 200, `HEAD ${c.conn.transport.name}'s connection on ${n}`);
    }
  }
  // A relay send from each client, through the survivors, reaches all.
  for (const c of clients) await c.invoke("SendToGroup", "fo", "msg", `relay ${c.conn.transport.name}`);
  for (const c of clients) {
    await until(() => transports.every((t) => c.received.some((r) => r[0] === `relay ${t}`)), "the relay sends");
  }
});

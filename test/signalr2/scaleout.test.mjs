// No sticky sessions: SignalR 2 clients behind a balancer that sends each
// request to the next node in turn. A long-polling client's polls
// alternate between nodes, each resuming from the client's messageId (a
// log index) in that node's store.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { nodes, transports, connect, send, balancer, run } from "./lib.mjs";

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

for (const transport of transports) {
  test(`${transport} behind a round-robin balancer: every message once, in order`, async () => {
    const lb = await balancer(nodes, "roundRobin");
    cleanup.push(lb.close);
    const hub = `rr_${transport}_${run}`;
    const h = hub.toLowerCase();
    const c = await connect(lb.url, { transport, hub, user: `rr-${transport}` });
    cleanup.push(async () => c.stop());
    await c.invoke("JoinGroup", "g");
    // Sends of every kind through every node, each awaited, so their
    // indexes are in the order sent; the client must see exactly them.
    const want = [];
    for (let i = 0; i < 24; i++) {
      const via = nodes[i % nodes.length];
      const path = [`/api/v1/hubs/${h}`, `/api/v1/hubs/${h}/groups/g`, `/api/v1/hubs/${h}/users/${c.user}`,
        `/api/v1/hubs/${h}/connections/${encodeURIComponent(c.conn.id)}`][i % 4];
      want.push([i, path.split("/")[5] || "all"]);
      await send(via, path, "msg", i, path.split("/")[5] || "all");
      if (i % 6 === 5) await c.waitFor((r) => r.length === i + 1, `message ${i}`); // let polls run in between
    }
    // A relay send from the client itself, through the balancer.
    const index = await c.invoke("SendToGroup", "g", "msg", 24, "relay");
    assert.equal(typeof index, "number");
    want.push([24, "relay"]);
    await c.waitFor((r) => r.length >= want.length, "every message");
    assert.deepEqual(c.received, want);
    const targets = (suffix) => new Set(lb.served.filter((s) => s.path.toLowerCase().endsWith(suffix)).map((s) => s.target));
    if (transport === "longPolling") {
      assert.ok(targets("/poll").size >= 2, `polls were served by ${[...targets("/poll")]}: want at least two nodes`);
    } else {
      // The stream stays on one node; sends and start went to others.
      assert.ok(targets("/send").size + targets("/start").size + targets("/negotiate").size >= 2,
        `requests were served by one node only: ${JSON.stringify(lb.served)}`);
    }
  });
}

// No sticky sessions: a long-polling client whose requests alternate between
// nodes, and automatic reconnect after the node holding a client dies.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { nodes, pids, connect, publish, balancer } from "./lib.mjs";

const servers = [];
after(() => servers.forEach((s) => s.close()));

test("a long-polling client whose polls alternate between nodes gets every message", async () => {
  const lb = await balancer(nodes);
  servers.push(lb);
  const c = await connect(lb.url, { transport: "LongPolling", user: "lp-roamer" });
  await c.conn.invoke("JoinGroup", "roamers");
  for (let i = 0; i < 10; i++) {
    await publish(nodes[i % nodes.length], "chat", "groups/roamers", { target: "msg", arguments: [`roam-${i}`] });
  }
  await c.waitFor((r) => r.length >= 10, "ten messages");
  assert.deepEqual(c.received.map((r) => r[0]), Array.from({ length: 10 }, (_, i) => `roam-${i}`));
  const polls = lb.requests.filter((u) => u.startsWith("/hubs/chat?id=")).length;
  assert.ok(polls >= 3, `expected several polls through the balancer, saw ${polls}`);
  await c.conn.stop();
});

test("a client reconnects automatically after the node holding it dies", async (t) => {
  if (pids.length !== nodes.length) t.skip("BACKPLANE_PIDS not given");
  const victim = nodes.length - 1;
  const lb = await balancer([nodes[victim]]);
  servers.push(lb);
  const c = await connect(lb.url, { transport: "WebSockets", user: "survivor", reconnect: [0, 200, 500, 1000, 1000, 1000, 2000, 2000] });
  const firstId = c.conn.connectionId;
  await publish(nodes[0], "chat", "", { target: "msg", arguments: ["before"] });
  await c.waitFor((r) => r.some((a) => a[0] === "before"), "the message before the failure");

  const reconnected = new Promise((resolve) => c.conn.onreconnected(resolve));
  lb.setTargets(nodes.filter((_, i) => i !== victim));
  process.kill(pids[victim], "SIGKILL");
  const newId = await reconnected;
  assert.notEqual(newId, firstId, "automatic reconnect negotiates a new connection");

  await publish(nodes[0], "chat", "", { target: "msg", arguments: ["after"] });
  await c.waitFor((r) => r.some((a) => a[0] === "after"), "the message after reconnecting");
  await c.conn.stop();
});

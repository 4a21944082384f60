// Upstream webhooks with the official client: methods that are not relay
// methods go to the upstream the cluster was started with (-upstream, an
// HTTP server in the Go test, test/cluster/upstream_test.go), which answers
// Add with a result (to JSON and MessagePack clients), Fail with an error
// completion, Status500 with a 500, and Seq/SeqLog to show that one
// connection's invocations arrive in order.
// The last test prints the id of a connection whose node it kills with
// SIGKILL; the Go test then waits for its connections/disconnected.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nodes, pids, connect } from "./lib.mjs";

test("a method answered by the upstream: result, error completion, error status", async () => {
  const { conn } = await connect(nodes[1], { user: "alice" });
  assert.equal(await conn.invoke("Add", 2, 3), 5);
  await assert.rejects(conn.invoke("Fail"), /nope from the upstream/);
  await assert.rejects(conn.invoke("Status500"), /Invocation failed, status code 500/);
  await conn.stop();
});

test("a MessagePack client's invocation reaches the upstream as MessagePack", async () => {
  const { conn } = await connect(nodes[2], { user: "dave", msgpack: true });
  assert.equal(await conn.invoke("Add", 20, 22), 42);
  await conn.stop();
});

test("one connection's invocations reach the upstream one at a time, in order", async () => {
  const { conn } = await connect(nodes[0], { user: "bob" });
  const calls = [];
  for (let i = 0; i < 10; i++) calls.push(conn.invoke("Seq", i));
  await Promise.all(calls);
  assert.deepEqual(await conn.invoke("SeqLog"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  await conn.stop();
});

test("the node holding a connection is killed with SIGKILL", async (t) => {
  if (pids.length !== nodes.length) t.skip("BACKPLANE_PIDS not given");
  const { conn } = await connect(nodes[2], { user: "carol" });
  assert.equal(await conn.invoke("Add", 1, 1), 2);
  console.log(`killed-conn ${conn.connectionId}`);
  process.kill(pids[2], "SIGKILL");
  await new Promise((resolve) => { conn.onclose(resolve); });
});

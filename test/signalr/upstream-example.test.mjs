// examples/upstream with the official client (run by
// test/cluster/upstream_example_test.go): Echo and Add are answered by the
// example, an unknown method is an error, and a stateful connection whose
// node is killed with SIGKILL resumes on another node and keeps calling
// the upstream under the same connection id.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { nodes, pids, connect, token, cutter } from "./lib.mjs";

const proxies = [];
after(() => proxies.forEach((p) => p.close()));

test("the example answers Echo and Add; an unknown method is an error", async () => {
  const { conn } = await connect(nodes[0], { user: "alice" });
  assert.deepEqual(await conn.invoke("Echo", { hello: ["world", 1] }), { hello: ["world", 1] });
  assert.equal(await conn.invoke("Add", 40, 2), 42);
  await assert.rejects(conn.invoke("Nope"), /unknown method Nope/);
  console.log(`plain-conn ${conn.connectionId}`);
  await conn.stop();
});

test("a stateful connection resumes on another node after SIGKILL and keeps calling the upstream", async (t) => {
  if (pids.length !== nodes.length) t.skip("BACKPLANE_PIDS not given");
  const proxy = await cutter(nodes[2]);
  proxies.push(proxy);
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${proxy.url}/hubs/chat`, { transport: signalR.HttpTransportType.WebSockets, accessTokenFactory: () => token("bob") })
    .withStatefulReconnect()
    .configureLogging(signalR.LogLevel.None)
    .build();
  let reconnecting = 0;
  conn.onreconnecting(() => { reconnecting++; });
  await conn.start();
  const id = conn.connectionId;
  assert.equal(await conn.invoke("Echo", "before"), "before");
  proxy.setTarget(nodes[1]);
  process.kill(pids[2], "SIGKILL");
  assert.equal(await conn.invoke("Echo", "after"), "after");
  assert.equal(await conn.invoke("Add", 1, 2), 3);
  assert.equal(conn.connectionId, id, "the connection id stays the same");
  assert.equal(reconnecting, 0, "a resume, not a reconnect with a new connection");
  console.log(`stateful-conn ${id}`);
  await conn.stop();
});

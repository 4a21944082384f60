// The optional blocking connect event (-upstream-connect-event), run by
// test/cluster/upstream_connect_test.go: the upstream refuses a negotiate
// with ?room=closed (403), and admits others under the user id and groups
// it answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { nodes, token, publish } from "./lib.mjs";

function client(baseUrl, user, query) {
  return new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/chat?${query}`, { transport: signalR.HttpTransportType.WebSockets, accessTokenFactory: () => token(user) })
    .configureLogging(signalR.LogLevel.None)
    .build();
}

test("the upstream refuses a connection with 403", async () => {
  const conn = client(nodes[0], "erin", "room=closed");
  await assert.rejects(conn.start(), /403/);
});

test("the upstream admits a connection under its user id and groups", async () => {
  const conn = client(nodes[1], "erin", "room=open");
  const got = [];
  conn.on("msg", (m) => got.push(m));
  await conn.start();
  assert.equal(await conn.invoke("WhoAmI"), "admitted-erin");
  await publish(nodes[2], "chat", "groups/lobby", { target: "msg", arguments: ["to the lobby"] });
  const deadline = Date.now() + 10000;
  while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, ["to the lobby"]);
  await conn.stop();
});

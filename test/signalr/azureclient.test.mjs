// Azure SignalR Service's client URL, run by test/cluster/azureclient_test.go:
// a serverless application's negotiate (Azure Functions' SignalRConnectionInfo
// binding, the Management SDK) hands clients "<endpoint>/client/?hub=<hub>"
// and a token whose audience is that URL and whose user id is in asrs.s.uid.
// Each transport connects there unchanged, on a different node than the one
// that sends to its user.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import * as signalR from "@microsoft/signalr";
import { nodes, transports, publish } from "./lib.mjs";

const accessKey = process.env.BACKPLANE_ACCESS_KEY;

/** azureToken signs a client token as Azure's negotiate binding does. */
function azureToken(endpoint, hub, user) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ aud: `${endpoint}/client/?hub=${hub}`, "asrs.s.uid": user, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

function azureClient(endpoint, hub, user, transport, tokenHub = hub) {
  return new signalR.HubConnectionBuilder()
    .withUrl(`${endpoint}/client/?hub=${hub}`, { transport: transports[transport], accessTokenFactory: () => azureToken(endpoint, tokenHub, user) })
    .configureLogging(signalR.LogLevel.None)
    .build();
}

for (const [i, transport] of Object.keys(transports).entries()) {
  test(`${transport}: a client at /client/?hub= gets a send to its asrs.s.uid user from another node`, async () => {
    const user = `azure-${transport}`;
    const conn = azureClient(nodes[i % nodes.length], "Chat", user, transport);
    const got = [];
    conn.on("msg", (m) => got.push(m));
    await conn.start();
    try {
      await publish(nodes[(i + 1) % nodes.length], "chat", `users/${user}`, { target: "msg", arguments: [`hello ${user}`] });
      const deadline = Date.now() + 10000;
      while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(got, [`hello ${user}`]);
    } finally {
      await conn.stop();
    }
  });
}

test("a token whose audience names another hub is refused at /client/", async () => {
  // 401, as Azure and ASP.NET answer a token that fails validation.
  const conn = azureClient(nodes[0], "chat", "mallory", "WebSockets", "admin");
  await assert.rejects(conn.start(), /audience binds it to hub "admin".*Status code '401'/s);
});

test("/client/negotiate without a hub answers 404 saying what it needs", async () => {
  const res = await fetch(`${nodes[0]}/client/negotiate?negotiateVersion=1`, { method: "POST" });
  assert.equal(res.status, 404);
  const body = await res.json();
  assert.match(body.error, /needs the hub in its query: \/client\/negotiate\?hub=<hub>/);
});

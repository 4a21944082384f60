// The jQuery SignalR 2 client (signalr 2.4.3) against a three-node
// cluster, over each transport: clients on different nodes in groups, the
// relay methods, REST sends, the generated proxy script, and an ASP.NET
// Core client on the same hub.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { nodes, transports, connect, send, rest, token, page, promise, allRoles, until, run } from "./lib.mjs";

const open = [];
after(() => {
  for (const c of open) c.stop();
});

/** has reports whether received holds a call with exactly these arguments. */
const has = (received, args) => received.some((r) => JSON.stringify(r) === JSON.stringify(args));

for (const transport of transports) {
  test(`${transport}: clients on three nodes in a group receive relay and REST sends, once each, in order`, async () => {
    const hub = `relay_${transport}_${run}`; // the proxy name; the hub is its lower case
    const h = hub.toLowerCase();
    const group = "room";
    const [a, b, c] = await Promise.all(nodes.map((n, i) => connect(n, { transport, hub, user: `${transport}-user${i}` })));
    open.push(a, b, c);
    for (const x of [a, b, c]) assert.equal(x.conn.transport.name, transport);

    // Every node answers for every connection: its record is replicated
    // (a node applies it a moment after the one that committed it).
    for (const n of nodes) {
      for (const x of [a, b, c]) {
        const path = `/api/v1/hubs/${h}/connections/${encodeURIComponent(x.conn.id)}`;
        await until(async () => (await rest(n, "HEAD", path)).status === 200, `HEAD ${path} on ${n} to answer 200`);
      }
    }
    assert.equal(await a.invoke("JoinGroup", group), undefined);
    assert.equal(await b.invoke("JoinGroup", group), undefined);
    for (const n of nodes) {
      const path = `/api/v1/hubs/${h}/groups/${group}`;
      await until(async () => (await rest(n, "HEAD", path)).status === 200, `HEAD ${path} on ${n} to answer 200`);
    }

    // A relay send to the group from c, which is not in it.
    const i1 = await c.invoke("SendToGroup", group, "msg", "from c", 1);
    assert.equal(typeof i1, "number");
    await a.waitFor((r) => has(r, ["from c", 1]), "the group send on a");
    await b.waitFor((r) => has(r, ["from c", 1]), "the group send on b");

    // REST sends through other nodes: group, user, connection.
    await send(nodes[2], `/api/v1/hubs/${h}/groups/${group}`, "msg", "rest group");
    await a.waitFor((r) => has(r, ["rest group"]), "the REST group send on a");
    await b.waitFor((r) => has(r, ["rest group"]), "the REST group send on b");
    await send(nodes[0], `/api/v1/hubs/${h}/users/${b.user}`, "msg", "rest to b's user");
    await b.waitFor((r) => has(r, ["rest to b's user"]), "the REST user send");
    await send(nodes[1], `/api/v1/hubs/${h}/connections/${encodeURIComponent(c.conn.id)}`, "msg", "rest to c");
    await c.waitFor((r) => has(r, ["rest to c"]), "the REST connection send");

    // Relay sends to a user and a connection held by other nodes.
    const i2 = await a.invoke("SendToUser", c.user, "msg", "a to c's user");
    await c.waitFor((r) => has(r, ["a to c's user"]), "the relay user send");
    const i3 = await b.invoke("SendToConnection", a.conn.id, "msg", { from: "b" });
    await a.waitFor((r) => has(r, [{ from: "b" }]), "the relay connection send");
    assert.ok(i1 < i2 && i2 < i3, `message indexes increase: ${i1} ${i2} ${i3}`);

    // a leaves: the next group send reaches only b; then a broadcast
    // reaches everyone, and marks the end.
    await a.invoke("LeaveGroup", group);
    await c.invoke("SendToGroup", group, "msg", "after a left");
    await b.waitFor((r) => has(r, ["after a left"]), "the group send after a left");
    await send(nodes[1], `/api/v1/hubs/${h}`, "msg", "end");
    for (const x of [a, b, c]) await x.waitFor((r) => has(r, ["end"]), "the broadcast");

    assert.deepEqual(a.received, [["from c", 1], ["rest group"], [{ from: "b" }], ["end"]]);
    assert.deepEqual(b.received, [["from c", 1], ["rest group"], ["rest to b's user"], ["after a left"], ["end"]]);
    assert.deepEqual(c.received, [["rest to c"], ["a to c's user"], ["end"]]);
    // The cursor each client keeps is a message index of the log.
    assert.match(a.conn.messageId, /^\d+$/);
    assert.ok(Number(a.conn.messageId) >= i3, `a's messageId ${a.conn.messageId} is past ${i3}`);
    // The groups token came with the join: b holds one.
    assert.ok(b.conn.groupsToken, "b has a groups token");
  });
}

test("a SignalR 2 client and an ASP.NET Core client on one hub see the same messages", async () => {
  const old = await connect(nodes[0], { transport: "webSockets", hub: `mixed${run}`, user: "old" });
  open.push(old);
  const core = new signalR.HubConnectionBuilder()
    .withUrl(`${nodes[1]}/hubs/mixed${run}`, { accessTokenFactory: () => token("core") })
    .configureLogging(signalR.LogLevel.None)
    .build();
  const coreReceived = [];
  core.on("msg", (...args) => coreReceived.push(args));
  await core.start();
  try {
    await old.invoke("JoinGroup", "both");
    await core.invoke("JoinGroup", "both");
    await core.invoke("SendToGroup", "both", "msg", "from core");
    await old.invoke("SendToGroup", "both", "msg", "from signalr2");
    await send(nodes[2], `/api/v1/hubs/mixed${run}/groups/both`, "msg", "from rest");
    await old.invoke("SendToConnection", core.connectionId, "msg", "to core only");
    await core.invoke("SendToConnection", old.conn.id, "msg", "to signalr2 only");
    await old.waitFor((r) => r.length >= 4, "four messages on the SignalR 2 client");
    const deadline = Date.now() + 10000;
    while (coreReceived.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.deepEqual(old.received, [["from core"], ["from signalr2"], ["from rest"], ["to signalr2 only"]]);
    assert.deepEqual(coreReceived, [["from core"], ["from signalr2"], ["from rest"], ["to core only"]]);
  } finally {
    await core.stop();
  }
});

test("hub errors: an unknown method, missing arguments and a missing permission fail the invocation only", async () => {
  const c = await connect(nodes[1], { transport: "longPolling", hub: `errors${run}`, user: "err" });
  const weak = await connect(nodes[2], { transport: "serverSentEvents", hub: `errors${run}`, user: "weak", roles: ["backplane.sendToAll"] });
  open.push(c, weak);
  await assert.rejects(c.invoke("Nope", 1), /'Nope' method could not be resolved/);
  await assert.rejects(c.invoke("SendToGroup"), /the group name is missing/);
  await assert.rejects(c.invoke("SendToGroup", "g"), /the target method name is missing/);
  await assert.rejects(weak.invoke("JoinGroup", "g"), /permission denied: the token does not grant backplane.joinLeaveGroup/);
  // The connection still works after the failures.
  const index = await weak.invoke("SendToAll", "msg", "still fine");
  assert.equal(typeof index, "number");
  await c.waitFor((r) => has(r, ["still fine"]), "the send after the failures");
});

test("negotiate: 401 without a token, the ASP.NET SignalR 2 fields, no availableTransports", async () => {
  const data = encodeURIComponent(JSON.stringify([{ name: "chathub" }]));
  const anon = await fetch(`${nodes[0]}/signalr/negotiate?clientProtocol=2.1&connectionData=${data}`);
  assert.equal(anon.status, 401);
  const res = await fetch(`${nodes[0]}/signalr/negotiate?clientProtocol=2.1&connectionData=${data}&access_token=${token("n")}`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.Url, "/signalr");
  assert.equal(body.ProtocolVersion, "2.0");
  assert.equal(body.TryWebSockets, true);
  assert.equal(body.KeepAliveTimeout, 20);
  assert.equal(body.DisconnectTimeout, 30);
  assert.equal(body.ConnectionTimeout, 110);
  assert.equal(body.TransportConnectTimeout, 5);
  assert.equal(body.LongPollDelay, 0);
  assert.ok(body.ConnectionId && body.ConnectionToken);
  assert.equal(body.availableTransports, undefined);
  const ping = await fetch(`${nodes[1]}/signalr/ping`);
  assert.deepEqual(await ping.json(), { Response: "pong" });
});

test("the generated proxy script at /signalr/hubs: $.connection.<hub> with server and client methods", async () => {
  const w = page(nodes[2]);
  const script = await (await fetch(`${nodes[2]}/signalr/hubs`)).text();
  w.eval(script);
  const $ = w.jQuery;
  const received = [];
  $.connection.hub.qs = { access_token: token("proxy-user", allRoles) };
  $.connection["proxyHub" + run].client.msg = (...args) => received.push(args);
  await promise($.connection.hub.start({ transport: "longPolling" }));
  try {
    assert.equal($.connection.hub.state, $.signalR.connectionState.connected);
    await promise($.connection["proxyHub" + run].server.joinGroup("p"));
    const index = await promise($.connection["proxyHub" + run].server.sendToGroup("p", "msg", "via the proxy"));
    assert.equal(typeof index, "number");
    await send(nodes[0], `/api/v1/hubs/proxyhub${run}`, "msg", "rest to proxyhub");
    const deadline = Date.now() + 10000;
    while (received.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.deepEqual(received, [["via the proxy"], ["rest to proxyhub"]]);
  } finally {
    $.connection.hub.stop();
    w.close();
  }
});

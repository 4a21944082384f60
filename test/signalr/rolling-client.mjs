// A stateful client for TestRollingRestartUnderLoad (test/cluster), run as a
// script, not a test file. It connects with withStatefulReconnect() through
// a TCP proxy that sends each new connection to a node whose /readyz is 200
// (as a balancer with health checks does), listens to the publishers'
// targets on BACKPLANE_HUB, prints "READY <connection id>", and when the
// "done" message arrives prints "SUMMARY <json>" and exits:
//   {connectionId, received: [payload ids in arrival order], closed, reconnecting}
import net from "node:net";
import http from "node:http";
import * as signalR from "@microsoft/signalr";
import { nodes } from "./lib.mjs";

const hub = process.env.BACKPLANE_HUB || "orders";
const targets = (process.env.BACKPLANE_TARGETS || "").split(",").filter(Boolean);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isReady(base) {
  return new Promise((resolve) => {
    const req = http.get(`${base}/readyz`, (res) => { res.resume(); resolve(res.statusCode === 200); });
    req.on("error", () => resolve(false));
    req.setTimeout(1000, () => { req.destroy(); resolve(false); });
  });
}

let next = 0;
async function pickReady() {
  for (let round = 0; round < 300; round++) {
    for (let i = 0; i < nodes.length; i++) {
      const base = nodes[(next + i) % nodes.length];
      if (await isReady(base)) {
        next = (next + i + 1) % nodes.length;
        return new URL(base);
      }
    }
    await sleep(100);
  }
  throw new Error("no ready node for 30 s");
}

const proxy = net.createServer(async (client) => {
  client.pause();
  client.on("error", () => {});
  let target;
  try { target = await pickReady(); } catch { console.error("proxy: no ready node"); client.destroy(); return; }
  console.error(`proxy: ${new Date().toISOString()} -> ${target.port}`);
  const upstream = net.connect(Number(target.port), target.hostname, () => {
    client.pipe(upstream).pipe(client);
    client.resume();
  });
  const drop = () => { client.destroy(); upstream.destroy(); };
  upstream.on("error", drop);
  upstream.on("close", drop);
  client.on("close", drop);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));

const conn = new signalR.HubConnectionBuilder()
  .withUrl(`http://127.0.0.1:${proxy.address().port}/hubs/${hub}`, { transport: signalR.HttpTransportType.WebSockets })
  .withStatefulReconnect()
  .configureLogging(signalR.LogLevel.None)
  .build();
const received = [];
let closed = null;
let reconnecting = 0;
for (const t of targets) conn.on(t, (id) => { received.push(id); });
conn.onreconnecting(() => { reconnecting++; });
const done = new Promise((resolve) => {
  conn.on("done", resolve);
  conn.onclose((err) => { closed = String(err || "closed"); resolve(); });
});
await conn.start();
console.log(`READY ${conn.connectionId}`);
const deadline = setTimeout(() => { closed = closed || "no done message within 5 minutes"; }, 5 * 60 * 1000);
await Promise.race([done, new Promise((r) => setTimeout(r, 5 * 60 * 1000))]);
clearTimeout(deadline);
console.log(`SUMMARY ${JSON.stringify({ connectionId: conn.connectionId, received, closed, reconnecting })}`);
await conn.stop().catch(() => {});
proxy.close();
process.exit(0);

// A stateful @microsoft/signalr client of examples/go-hub (run by
// main_test.go) whose connection resumes on another process: it connects
// through a TCP proxy to NODES[2], joins a room, prints KILL and waits for
// a line on stdin (the test has killed that process with SIGKILL); the
// proxy then sends the reconnect to NODES[0], and a message sent to the
// room from another client must reach it under the same connection id.
import net from "node:net";
import readline from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(process.env.SIGNALR_DIR + "/");
const signalR = require("@microsoft/signalr");
const nodes = process.env.NODES.split(",");
const hostPort = (u) => { const x = new URL(u); return { host: x.hostname, port: Number(x.port) }; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let targets = [hostPort(nodes[2]), hostPort(nodes[0])];
const proxy = net.createServer((client) => {
  const tryTarget = (i) => {
    if (i >= targets.length) { client.destroy(); return; }
    const up = net.connect(targets[i]);
    up.once("error", () => { up.destroy(); tryTarget(i + 1); });
    up.once("connect", () => {
      up.removeAllListeners("error");
      client.pipe(up); up.pipe(client);
      up.on("error", () => client.destroy()); client.on("error", () => up.destroy());
      up.on("close", () => client.destroy()); client.on("close", () => up.destroy());
    });
  };
  tryTarget(0);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${proxy.address().port}`;

const c = new signalR.HubConnectionBuilder()
  .withUrl(`${base}/hubs/chat`, { transport: signalR.HttpTransportType.WebSockets })
  .withStatefulReconnect()
  .configureLogging(signalR.LogLevel.Warning)
  .build();
let closed = false;
c.onclose(() => { closed = true; });
const texts = [];
c.on("message", (room, m) => texts.push(m.text));
await c.start();
const id = c.connectionId;
await c.invoke("Join", "room2");
console.log("KILL");
const rl = readline.createInterface({ input: process.stdin });
await new Promise((r) => rl.once("line", r));
rl.close();

const a = new signalR.HubConnectionBuilder().withUrl(`${nodes[0]}/hubs/chat`).configureLogging(signalR.LogLevel.Warning).build();
await a.start();
for (let i = 0; i < 100 && !texts.includes("after"); i++) {
  await a.invoke("Send", "room2", "ann", "after");
  await sleep(200);
}
if (!texts.includes("after")) throw new Error(`the resumed client got ${JSON.stringify(texts)}; closed=${closed}`);
if (closed || c.connectionId !== id) throw new Error(`connection closed=${closed} id ${id} -> ${c.connectionId}`);
await a.stop();
await c.stop();
proxy.close();
console.log("OK");

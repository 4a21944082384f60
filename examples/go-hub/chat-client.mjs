// Drives examples/go-hub with the official @microsoft/signalr client (run
// by main_test.go): NODES is a comma-separated list of the processes' base
// URLs, SIGNALR_DIR the folder whose node_modules has the client.
import { createRequire } from "node:module";

const require = createRequire(process.env.SIGNALR_DIR + "/");
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const nodes = process.env.NODES.split(",");

function connect(base, msgpack = false) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/chat`)
    .configureLogging(signalR.LogLevel.Warning);
  if (msgpack) b = b.withHubProtocol(new MessagePackHubProtocol());
  return b.build();
}

// a speaks JSON, b MessagePack: the hub's arguments and results reach both.
const a = connect(nodes[0]);
const b = connect(nodes[1], true);
const got = new Promise((resolve) => b.on("message", (room, m) => resolve({ room, m })));
await a.start();
await b.start();
await a.invoke("Join", "room");
await b.invoke("Join", "room");
await a.invoke("Send", "room", "ann", "  hello  ");
const { room, m } = await got;
if (room !== "room" || m.user !== "ann" || m.text !== "hello") throw new Error(`b got ${room} ${JSON.stringify(m)}`);
let refused = "";
try { await a.invoke("send", "room", "ann", "   "); } catch (e) { refused = e.message; }
if (!refused.includes("HubException: a message must have 1 to 500 characters")) throw new Error(`empty message: ${refused}`);
const history = await a.invoke("History", "room");
if (JSON.stringify(history) !== JSON.stringify([{ user: "ann", text: "hello" }])) throw new Error(`history ${JSON.stringify(history)}`);
await b.invoke("Send", "room", "bob", "from msgpack");
const historyB = await b.invoke("History", "room");
if (JSON.stringify(historyB.at(-1)) !== JSON.stringify({ user: "bob", text: "from msgpack" })) throw new Error(`history over MessagePack ${JSON.stringify(historyB)}`);
await a.stop();
await b.stop();
console.log("OK");

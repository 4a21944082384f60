// A chat between two clients on two different Backplane nodes, using the
// official SignalR client unchanged. Start a local cluster first
// (scripts/cluster.sh), then: npm install && node chat.mjs
//
// BACKPLANE_NODES overrides the node URLs (comma-separated).
import * as signalR from "@microsoft/signalr";

const nodes = (process.env.BACKPLANE_NODES || "http://127.0.0.1:8080,http://127.0.0.1:8081").split(",");
const room = "lobby";

async function join(name, baseUrl) {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/chat`)
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  connection.on("newMessage", (from, text) => console.log(`[${name} on ${baseUrl}] ${from}: ${text}`));
  await connection.start();
  // Relay hub methods: no server code needed.
  await connection.invoke("JoinGroup", room);
  return connection;
}

const alice = await join("alice", nodes[0]);
const bob = await join("bob", nodes[1 % nodes.length]);

// Each send is committed to the replicated log before it completes; the
// result is the message's index in the log.
const i1 = await alice.invoke("SendToGroup", room, "newMessage", "alice", "hello from node 1");
const i2 = await bob.invoke("SendToGroup", room, "newMessage", "bob", "hi alice, I'm on node 2");
console.log(`committed at indexes ${i1} and ${i2}`);

await new Promise((resolve) => setTimeout(resolve, 500));
await alice.stop();
await bob.stop();

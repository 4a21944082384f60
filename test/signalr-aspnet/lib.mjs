// Helpers for the @aspnet/signalr 1.1.4 tests (the ASP.NET Core 2.x
// client). The Go test in test/cluster starts a three-node cluster of the
// built binary and runs these files with BACKPLANE_NODES (comma-separated
// base URLs) and BACKPLANE_ACCESS_KEY (the cluster's -access-key).
import crypto from "node:crypto";
import signalR from "@aspnet/signalr";
import msgpack from "@aspnet/signalr-protocol-msgpack";

export const nodes = (process.env.BACKPLANE_NODES || "").split(",").filter(Boolean);
const accessKey = process.env.BACKPLANE_ACCESS_KEY || "";
if (nodes.length === 0) throw new Error("BACKPLANE_NODES is not set: run these tests through go test ./test/cluster");

export { signalR };

export const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};

const allRoles = ["backplane.sendToAll", "backplane.sendToGroup", "backplane.joinLeaveGroup", "backplane.sendToUser", "backplane.sendToConnection"];

/** token signs an HS256 JWT for a user with the cluster's access key. */
export function token(user, ttlSeconds = 600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ nameid: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds, role: allRoles });
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** connect starts a 1.1.4 client and records every "msg" it receives. */
export async function connect(baseUrl, { transport = "WebSockets", msgpack: useMsgpack = false, user = "anon", hub = "chat" } = {}) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/${hub}`, { transport: transports[transport], accessTokenFactory: () => token(user) })
    .configureLogging(signalR.LogLevel.None);
  if (useMsgpack) b = b.withHubProtocol(new msgpack.MessagePackHubProtocol());
  const conn = b.build();
  const received = [];
  const waiters = [];
  conn.on("msg", (...args) => {
    received.push(args);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise((resolve) => conn.onclose((err) => resolve(err)));
  await conn.start();
  const waitFor = (pred, what, ms = 10000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pred(received)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve(received);
        }
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(check), 1);
        reject(new Error(`timed out waiting for ${what}; received ${JSON.stringify(received)}`));
      }, ms);
      waiters.push(check);
      check();
    });
  return { conn, received, waitFor, closed, user };
}

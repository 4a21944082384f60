// Helpers for the @aspnet/signalr 1.1.4 tests (the ASP.NET Core 2.x
// client). The Go test in test/cluster starts a three-node cluster of the
// built binary and runs these files with BACKPLANE_NODES (comma-separated
// base URLs) and BACKPLANE_ACCESS_KEY (the cluster's -access-key).
import signalR from "@aspnet/signalr";
import msgpack from "@aspnet/signalr-protocol-msgpack";
import { allRoles, recorder, userToken } from "../clientlib/cluster.mjs";

export { nodes } from "../clientlib/cluster.mjs";
export { signalR };

export const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};

/** token signs an HS256 JWT for a user with the cluster's access key. */
export function token(user, ttlSeconds = 600) {
  return userToken(user, allRoles, ttlSeconds);
}

/** connect starts a 1.1.4 client and records every "msg" it receives. */
export async function connect(baseUrl, { transport = "WebSockets", msgpack: useMsgpack = false, user = "anon", hub = "chat" } = {}) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/${hub}`, { transport: transports[transport], accessTokenFactory: () => token(user) })
    .configureLogging(signalR.LogLevel.None);
  if (useMsgpack) b = b.withHubProtocol(new msgpack.MessagePackHubProtocol());
  const conn = b.build();
  const { received, record, waitFor } = recorder();
  conn.on("msg", (...args) => record(args));
  const closed = new Promise((resolve) => conn.onclose((err) => resolve(err)));
  await conn.start();
  return { conn, received, waitFor, closed, user };
}

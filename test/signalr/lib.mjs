// Helpers for the SignalR client tests. The Go test in test/cluster starts a
// three-node cluster of the built binary and runs these files with:
//   BACKPLANE_NODES       comma-separated base URLs of the nodes
//   BACKPLANE_ACCESS_KEY  the cluster's -access-key (tokens are signed with it)
//   BACKPLANE_PIDS        comma-separated process ids, in the same order
import http from "node:http";
import net from "node:net";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import { allRoles, recorder, restToken, spliceUpgrade, userToken } from "../clientlib/cluster.mjs";

export { nodes, pids, allRoles } from "../clientlib/cluster.mjs";

export const transports = {
  WebSockets: signalR.HttpTransportType.WebSockets,
  ServerSentEvents: signalR.HttpTransportType.ServerSentEvents,
  LongPolling: signalR.HttpTransportType.LongPolling,
};

/** token signs an HS256 JWT for a user with the cluster's access key, granting roles. */
export function token(user, ttlSeconds = 600, roles = allRoles) {
  return userToken(user, roles, ttlSeconds);
}

/**
 * connect starts an official client on a base URL and records every "msg"
 * it receives as {args}.
 */
export async function connect(baseUrl, { transport = "WebSockets", msgpack = false, user = "anon", hub = "chat", reconnect = null, stateful = false } = {}) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/${hub}`, { transport: transports[transport], accessTokenFactory: () => token(user) })
    .configureLogging(signalR.LogLevel.None);
  if (msgpack) b = b.withHubProtocol(new MessagePackHubProtocol());
  if (reconnect) b = b.withAutomaticReconnect(reconnect);
  if (stateful) b = b.withStatefulReconnect();
  const conn = b.build();
  const { received, record, waitFor } = recorder();
  conn.on("msg", (...args) => record(args));
  await conn.start();
  return { conn, received, waitFor, user };
}

/** publish sends a REST broadcast (or a sub-path like "groups/g") through a node. */
export async function publish(baseUrl, hub, sub, body) {
  const url = `${baseUrl}/api/v1/hubs/${hub}${sub ? "/" + sub : ""}`;
  const bearer = restToken(url);
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 202) throw new Error(`publish ${url}: ${res.status} ${text}`);
  return JSON.parse(text).index;
}

/** rest calls the REST API of a node with a valid access token; returns the status. */
export async function rest(baseUrl, method, path) {
  const url = `${baseUrl}${path}`;
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${restToken(url)}` } });
  await res.arrayBuffer();
  return res.status;
}

/**
 * balancer starts a loopback HTTP proxy that sends each request (and each
 * WebSocket upgrade) to the next target in turn, skipping targets that
 * refuse connections: a load balancer without sticky sessions.
 */
export async function balancer(targets) {
  let next = 0;
  const pick = () => targets[next++ % targets.length];
  const forward = (req, onResponse, onError, attempt = 0) => {
    const target = new URL(pick());
    const out = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, onResponse);
    out.on("error", (err) => (attempt + 1 < targets.length ? forward(req, onResponse, onError, attempt + 1) : onError(err)));
    return out;
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const send = (attempt) => {
        const out = forward(req, (up) => {
          res.writeHead(up.statusCode, up.headers);
          up.pipe(res);
        }, () => { res.writeHead(502); res.end(); }, attempt);
        out.end(body);
      };
      send(0);
      server.requests.push(req.url);
    });
  });
  server.requests = [];
  server.on("upgrade", (req, socket, head) => {
    const out = forward(req, () => {}, () => socket.destroy());
    out.on("upgrade", (up, upSocket, upHead) => spliceUpgrade(socket, head, up, upSocket, upHead));
    out.on("response", (res) => { socket.end(`HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\n\r\n`); });
    out.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  server.url = `http://127.0.0.1:${server.address().port}`;
  server.setTargets = (list) => { targets = list; next = 0; };
  return server;
}

/**
 * cutter is a loopback TCP proxy to targetUrl whose target can change
 * (setTarget) and whose sockets can be cut at once, without a WebSocket
 * close frame (cut); close cuts them and stops listening.
 */
export async function cutter(targetUrl) {
  let target = new URL(targetUrl);
  const open = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    open.add(client);
    open.add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setTarget(u) { target = new URL(u); },
    /** cut drops every connection at once: no WebSocket close frame. */
    cut() { for (const s of open) s.destroy(); open.clear(); },
    close() { this.cut(); server.close(); },
  };
}

/** eventually retries fn until pred(result) holds (followers apply a few ms after the leader). */
export async function eventually(fn, pred, what, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}; last result ${JSON.stringify(last)}`);
}

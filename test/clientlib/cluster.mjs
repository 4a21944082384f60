// What the Node.js client test folders (test/signalr, test/signalr-aspnet,
// test/signalr2) share: the cluster the Go test in test/cluster started
// for them, tokens signed with its access key, and a recorder of the "msg"
// calls a client receives. The Go test runs their files with:
//   BACKPLANE_NODES       comma-separated base URLs of the nodes
//   BACKPLANE_ACCESS_KEY  the cluster's -access-key (tokens are signed with it)
//   BACKPLANE_PIDS        comma-separated process ids, in the same order
// It imports only Node's own modules, so it needs no npm install: each
// folder keeps its own package.json and node_modules.
import crypto from "node:crypto";

export const nodes = (process.env.BACKPLANE_NODES || "").split(",").filter(Boolean);
export const pids = (process.env.BACKPLANE_PIDS || "").split(",").filter(Boolean).map(Number);
const accessKey = process.env.BACKPLANE_ACCESS_KEY || "";
if (nodes.length === 0) throw new Error("BACKPLANE_NODES is not set: run these tests through go test ./test/cluster");

/**
 * Every relay permission: with -access-key the cluster's relay policy is
 * "roles", and these tests exercise every relay method and group= stream.
 */
export const allRoles = [
  "backplane.sendToAll",
  "backplane.sendToGroup",
  "backplane.joinLeaveGroup",
  "backplane.sendToUser",
  "backplane.sendToConnection",
];

/** signJWT signs claims as an HS256 JWT with the cluster's access key. */
export function signJWT(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = crypto.createHmac("sha256", accessKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** userToken is a client token for a user, granting roles, valid for ttlSeconds. */
export function userToken(user, roles, ttlSeconds) {
  return signJWT({ nameid: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds, role: roles });
}

/** restToken is a token for one call of the REST API at url, valid for 10 minutes. */
export function restToken(url) {
  return signJWT({ aud: url, exp: Math.floor(Date.now() / 1000) + 600 });
}

/**
 * recorder keeps what a client's "msg" handler receives: record(args) adds
 * one call's arguments to received; waitFor(pred, what, ms) resolves with
 * received once pred(received) holds, or rejects after ms with what was
 * received, followed by more() (the client's own context).
 */
export function recorder(more = () => "") {
  const received = [];
  const waiters = [];
  const record = (args) => {
    received.push(args);
    for (const w of [...waiters]) w();
  };
  /** waitFor resolves once pred(received) holds, or rejects at the deadline. */
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
        reject(new Error(`timed out waiting for ${what}; received ${JSON.stringify(received)}${more()}`));
      }, ms);
      waiters.push(check);
      check();
    });
  return { received, record, waitFor };
}

/**
 * spliceUpgrade completes a proxied WebSocket upgrade: it writes the
 * target's answer (up, its status line and raw headers) to the client's
 * socket, passes on the bytes each side sent past its headers (upHead,
 * head), and pipes the two sockets together; an error on either destroys
 * the other.
 */
export function spliceUpgrade(socket, head, up, upSocket, upHead) {
  let raw = `HTTP/1.1 ${up.statusCode} ${up.statusMessage}\r\n`;
  for (let i = 0; i < up.rawHeaders.length; i += 2) raw += `${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}\r\n`;
  socket.write(raw + "\r\n");
  if (upHead.length) socket.write(upHead);
  if (head.length) upSocket.write(head);
  upSocket.pipe(socket).pipe(upSocket);
  socket.on("error", () => upSocket.destroy());
  upSocket.on("error", () => socket.destroy());
}

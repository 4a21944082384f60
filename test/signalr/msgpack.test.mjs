// MessagePack values between @microsoft/signalr clients on different nodes
// arrive exactly as they were sent, and a JSON client gets their documented
// JSON form (issue 13, item 5; docs/signalr.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import { Encoder, ExtensionCodec } from "@msgpack/msgpack"; // the protocol's own encoder
import { nodes, token } from "./lib.mjs";

/** Point travels as the user extension type 7: [x, y]. */
class Point {
  constructor(x, y) {
    this.x = x;
    this.y = y;
  }
}
const codec = new ExtensionCodec(); // with the timestamp extension (-1) for Date
codec.register({
  type: 7,
  encode: (v) => (v instanceof Point ? new Uint8Array([v.x, v.y]) : null),
  decode: (d) => new Point(d[0], d[1]),
});

/**
 * mapsAsMaps makes an encoder write a JS Map as a MessagePack map with its
 * own keys (the library writes Object.keys, so a Map with integer keys
 * could not be sent otherwise).
 */
function mapsAsMaps(enc) {
  const encodeObject = enc.encodeObject.bind(enc);
  enc.encodeObject = function (object, depth) {
    if (!(object instanceof Map)) return encodeObject(object, depth);
    assert.ok(object.size < 16, "a fixmap");
    this.writeU8(0x80 + object.size);
    for (const [k, v] of object) {
      this.doEncode(k, depth + 1);
      this.doEncode(v, depth + 1);
    }
  };
  return enc;
}

/** protocol is the MessagePack hub protocol with Point and Map; raw collects every frame it parses. */
function protocol(raw) {
  const p = new MessagePackHubProtocol({ extensionCodec: codec });
  mapsAsMaps(p._encoder);
  const parse = p.parseMessages.bind(p);
  p.parseMessages = (input, logger) => {
    raw.push(Buffer.from(input));
    return parse(input, logger);
  };
  return p;
}

async function start(baseUrl, user, proto) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/hubs/fidelity`, { transport: signalR.HttpTransportType.WebSockets, accessTokenFactory: () => token(user) })
    .configureLogging(signalR.LogLevel.None);
  if (proto) b = b.withHubProtocol(proto);
  const conn = b.build();
  const got = [];
  conn.on("recv", (...args) => got.push(args));
  await conn.start();
  return { conn, got };
}

async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("MessagePack values arrive unchanged between clients on different nodes; JSON clients get the JSON form", async () => {
  const senderRaw = [];
  const receiverRaw = [];
  const sender = await start(nodes[0], "mp-sender", protocol(senderRaw));
  const receiver = await start(nodes[1], "mp-receiver", protocol(receiverRaw));
  const json = await start(nodes[2], "json-receiver", null);
  try {
    const when = new Date(Date.UTC(2024, 4, 1, 12, 0, 0, 123));
    const values = [
      new Uint8Array([1, 2]),
      when,
      new Map([[1, "a"], [-2, "b"]]),
      NaN,
      Infinity,
      new Point(3, 4),
      { nested: [new Uint8Array([255]), new Date(0), -Infinity, new Map([[7, new Uint8Array([9])]])] },
    ];
    await sender.conn.invoke("SendToAll", "recv", ...values);
    await until(() => receiver.got.length > 0 && json.got.length > 0, "both receivers");

    // The MessagePack receiver: the same values (a Map decodes as an object)…
    assert.deepEqual(receiver.got, [
      [
        new Uint8Array([1, 2]),
        when,
        { 1: "a", [-2]: "b" },
        NaN,
        Infinity,
        new Point(3, 4),
        { nested: [new Uint8Array([255]), new Date(0), -Infinity, { 7: new Uint8Array([9]) }] },
      ],
    ]);
    // …from the very bytes the sender wrote: integer keys stay integers.
    const sent = Buffer.from(mapsAsMaps(new Encoder(codec)).encode(values));
    assert.ok(Buffer.concat(senderRaw).length > 0, "the sender parsed the server's frames");
    assert.ok(
      receiverRaw.some((f) => f.includes(sent)),
      `the receiver's frames contain the arguments as sent: ${sent.toString("hex")}\nin ${receiverRaw.map((f) => f.toString("hex")).join("\n")}`,
    );

    // The JSON receiver: the documented JSON form.
    assert.deepEqual(json.got, [
      [
        "AQI=",
        "2024-05-01T12:00:00.123Z",
        { 1: "a", [-2]: "b" },
        null,
        null,
        { type: 7, data: "AwQ=" },
        { nested: ["/w==", "1970-01-01T00:00:00Z", null, { 7: "CQ==" }] },
      ],
    ]);
  } finally {
    await sender.conn.stop();
    await receiver.conn.stop();
    await json.conn.stop();
  }
});

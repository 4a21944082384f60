// Package hubproto encodes and decodes the ASP.NET Core SignalR hub
// protocol, in its JSON and MessagePack forms, for Backplane's transports.
// It has no network code: a transport feeds it received bytes and writes out
// the records it produces.
//
// # Wire format
//
// A connection starts with the client's handshake, always JSON whatever the
// protocol: {"protocol":"json"|"messagepack","version":1|2} followed by the
// record separator 0x1E (see ParseHandshakeRequest). The server answers {}
// or {"error":"..."} plus 0x1E (EncodeHandshakeResponse) before anything
// else. Bytes after the handshake's 0x1E are ordinary protocol records.
//
// JSON records (protocol "json", transfer format Text) are one JSON object
// each, ended by 0x1E. Properties may come in any order (the JS client
// writes "type" last) and unknown ones are ignored. For example:
//
//	{"type":1,"target":"notify","arguments":["x",1]}␞
//	{"type":3,"invocationId":"0","result":"hi"}␞
//	{"type":7,"error":"Connection closed with an error.","allowReconnect":true}␞
//
// MessagePack records (protocol "messagepack", transfer format Binary) are a
// VarInt length (7 bits per byte, least significant first, at most 5 bytes)
// followed by a MessagePack array:
//
//	Invocation        [1, headers, invocationId|nil, target, [args], [streamIds]?]
//	StreamItem        [2, headers, invocationId, item]
//	Completion        [3, headers, invocationId, 1=error|2=void|3=result, error|result?]
//	StreamInvocation  [4, headers, invocationId, target, [args], [streamIds]?]
//	CancelInvocation  [5, headers, invocationId]
//	Ping              [6]
//	Close             [7, error|nil, allowReconnect?]
//	Ack, Sequence     [8|9, sequenceId]
//
// Parsers accept 5- or 6-element invocations (the JS client omits an empty
// streamIds) and Close with or without allowReconnect; the encoder writes
// ASP.NET's layouts (6-element invocations, 3-element Close).
//
// Several records may share one WebSocket frame or HTTP body, and a record
// may be split across frames: Parse consumes only complete records and
// reports how many bytes it used, so the caller keeps the rest.
//
// # Values and conversion
//
// Invocation arguments, stream items and completion results are kept raw
// (RawValue) in the encoding they arrived in, so that forwarding to clients
// of the same protocol copies bytes instead of decoding them. Encoding a
// message with the other protocol converts its raw values: JSONToMsgpack and
// MsgpackToJSON define the mapping (integers stay integers, bin becomes
// base64, map keys become strings, timestamps become RFC 3339 strings).
//
// # Fan-out
//
// Encoding is append-style and allocation-free when the destination has
// room, so a message can be encoded once per protocol and the bytes shared
// by every recipient. AppendInvocationJSON and AppendInvocationMsgpack are
// the fast paths for the common fire-and-forget Invocation built from a
// JSON array of arguments; PingRecord and AppendClose give the control
// records.
//
// # Supported
//
// Message types 1 to 9 (including Ack and Sequence of stateful reconnect,
// protocol version 2), headers, upload stream ids, 5- and 6-element
// MessagePack invocations, Close with or without allowReconnect, and a
// maximum message size measured on the framed record as ASP.NET does.
// Records of unknown types are skipped. Empty strings stand for absent
// invocation ids and errors, as in ASP.NET.
package hubproto

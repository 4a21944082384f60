package hubproto

import (
	"log/slog"
	"strconv"
)

// MessageType is the numeric "type" of a hub message. The values are fixed
// by the SignalR hub protocol and must never change.
type MessageType int

// Hub message types, as numbered on the wire.
const (
	// Invocation calls a method on the peer. Without an InvocationID it is
	// fire-and-forget and must not be answered.
	Invocation MessageType = 1
	// StreamItem carries one item of a server stream or an upload stream.
	StreamItem MessageType = 2
	// Completion ends an invocation or a stream, with a result, an error, or
	// neither (void).
	Completion MessageType = 3
	// StreamInvocation asks the server to start a server-to-client stream.
	StreamInvocation MessageType = 4
	// CancelInvocation cancels a server stream started by StreamInvocation.
	CancelInvocation MessageType = 5
	// Ping is a keep-alive with no payload.
	Ping MessageType = 6
	// Close ends the connection, optionally with an error and a hint that
	// the client may reconnect.
	Close MessageType = 7
	// Ack acknowledges received trackable messages (stateful reconnect).
	Ack MessageType = 8
	// Sequence tells the peer which message id the replay after a resume
	// starts at (stateful reconnect).
	Sequence MessageType = 9
)

// String returns the protocol name of the type, or "MessageType(N)".
func (t MessageType) String() string {
	switch t {
	case Invocation:
		return "Invocation"
	case StreamItem:
		return "StreamItem"
	case Completion:
		return "Completion"
	case StreamInvocation:
		return "StreamInvocation"
	case CancelInvocation:
		return "CancelInvocation"
	case Ping:
		return "Ping"
	case Close:
		return "Close"
	case Ack:
		return "Ack"
	case Sequence:
		return "Sequence"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Known reports whether t is one of the types 1 to 9 this package encodes.
func (t MessageType) Known() bool { return t >= Invocation && t <= Sequence }

// Trackable reports whether messages of this type are numbered, buffered and
// acknowledged by stateful reconnect (types 1 to 5).
func (t MessageType) Trackable() bool { return t >= Invocation && t <= CancelInvocation }

// Format names the encoding a RawValue is kept in.
type Format uint8

// Encodings of a RawValue.
const (
	// FormatJSON marks Data as one JSON value (UTF-8 text).
	FormatJSON Format = 1
	// FormatMsgpack marks Data as one MessagePack value.
	FormatMsgpack Format = 2
)

// RawValue is one protocol value (an invocation argument, a stream item or a
// completion result) kept in the encoding it arrived in, so that a message
// can be forwarded to recipients of the same protocol without re-encoding.
// Encoding it for the other protocol converts it (see JSONToMsgpack and
// MsgpackToJSON).
//
// The zero RawValue has no data and encodes as null in both protocols.
type RawValue struct {
	// Format is the encoding of Data.
	Format Format
	// Data holds exactly one value in Format's encoding.
	Data []byte
}

// JSONValue wraps data, which must hold exactly one valid JSON value, as a
// RawValue. The data is not copied or validated.
func JSONValue(data []byte) RawValue { return RawValue{Format: FormatJSON, Data: data} }

// MsgpackValue wraps data, which must hold exactly one valid MessagePack
// value, as a RawValue. The data is not copied or validated.
func MsgpackValue(data []byte) RawValue { return RawValue{Format: FormatMsgpack, Data: data} }

// IsZero reports whether v holds no data (it then encodes as null).
func (v RawValue) IsZero() bool { return len(v.Data) == 0 }

// AppendJSON appends v encoded as JSON to dst, converting from MessagePack if
// needed. On error dst is returned unchanged.
func (v RawValue) AppendJSON(dst []byte) ([]byte, error) {
	if len(v.Data) == 0 {
		return append(dst, "null"...), nil
	}
	switch v.Format {
	case FormatJSON:
		return append(dst, v.Data...), nil
	case FormatMsgpack:
		return MsgpackToJSON(dst, v.Data)
	}
	return dst, errorf(ErrInvalidMessage, "raw value has unknown format %d", v.Format)
}

// AppendMsgpack appends v encoded as MessagePack to dst, converting from JSON
// if needed. On error dst is returned unchanged.
func (v RawValue) AppendMsgpack(dst []byte) ([]byte, error) {
	if len(v.Data) == 0 {
		return append(dst, mpNil), nil
	}
	switch v.Format {
	case FormatMsgpack:
		return append(dst, v.Data...), nil
	case FormatJSON:
		return JSONToMsgpack(dst, v.Data)
	}
	return dst, errorf(ErrInvalidMessage, "raw value has unknown format %d", v.Format)
}

// Message is one decoded hub message of any type. Only the fields that
// belong to Type are meaningful; encoders ignore the others and the parsers
// leave them zero.
//
// An empty InvocationID means "none": a fire-and-forget Invocation. As in
// ASP.NET, Invocation and StreamInvocation need a non-empty Target, and
// StreamInvocation, StreamItem, Completion and CancelInvocation need a
// non-empty InvocationID; parsers reject records without them and encoders
// refuse to write them. Empty slices and maps are equivalent to nil, and an
// empty Error means no error.
type Message struct {
	// Type is the message type.
	Type MessageType
	// InvocationID identifies the invocation (types 1 to 5). For StreamItem
	// and Completion of an upload stream it is the stream id.
	InvocationID string
	// Target is the method name (Invocation, StreamInvocation).
	Target string
	// Arguments are the invocation arguments (Invocation, StreamInvocation).
	Arguments []RawValue
	// StreamIDs lists upload streams passed as arguments (Invocation,
	// StreamInvocation).
	StreamIDs []string
	// Item is the stream item (StreamItem).
	Item RawValue
	// Result is the completion result (Completion), meaningful only when
	// HasResult is true.
	Result RawValue
	// HasResult distinguishes a Completion with a result (possibly null)
	// from a void Completion.
	HasResult bool
	// Error is the error text (Completion, Close); empty means none.
	Error string
	// AllowReconnect asks the client to reconnect automatically (Close).
	AllowReconnect bool
	// SequenceID is the message id of an Ack or Sequence.
	SequenceID int64
	// Headers are the optional string headers (all types but Ping, Close,
	// Ack and Sequence).
	Headers map[string]string
}

// LogValue summarises the message for log/slog without its payload.
func (m *Message) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.String("type", m.Type.String()))
	switch m.Type {
	case Invocation, StreamInvocation:
		if m.InvocationID != "" {
			attrs = append(attrs, slog.String("invocationId", m.InvocationID))
		}
		attrs = append(attrs, slog.String("target", m.Target), slog.Int("args", len(m.Arguments)))
		if len(m.StreamIDs) > 0 {
			attrs = append(attrs, slog.Int("streams", len(m.StreamIDs)))
		}
	case StreamItem, CancelInvocation:
		attrs = append(attrs, slog.String("invocationId", m.InvocationID))
	case Completion:
		attrs = append(attrs, slog.String("invocationId", m.InvocationID))
		if m.Error != "" {
			attrs = append(attrs, slog.String("error", m.Error))
		} else {
			attrs = append(attrs, slog.Bool("hasResult", m.HasResult))
		}
	case Close:
		if m.Error != "" {
			attrs = append(attrs, slog.String("error", m.Error))
		}
		attrs = append(attrs, slog.Bool("allowReconnect", m.AllowReconnect))
	case Ack, Sequence:
		attrs = append(attrs, slog.Int64("sequenceId", m.SequenceID))
	}
	return slog.GroupValue(attrs...)
}

// missingField returns the name of a field that m.Type requires to be
// non-empty but that m lacks, or "". ASP.NET rejects such messages.
func (m *Message) missingField() string {
	switch m.Type {
	case Invocation:
		if m.Target == "" {
			return "target"
		}
	case StreamInvocation:
		if m.InvocationID == "" {
			return "invocationId"
		}
		if m.Target == "" {
			return "target"
		}
	case StreamItem, Completion, CancelInvocation:
		if m.InvocationID == "" {
			return "invocationId"
		}
	}
	return ""
}

// checkEncodable reports why m cannot be encoded, or nil.
func (m *Message) checkEncodable() error {
	if !m.Type.Known() {
		return errorf(ErrInvalidMessage, "cannot encode message type %d", int(m.Type))
	}
	if f := m.missingField(); f != "" {
		return errorf(ErrInvalidMessage, "%v without %s", m.Type, f)
	}
	if m.Type == Completion && m.Error != "" && m.HasResult {
		return errorf(ErrInvalidMessage, "completion %q has both a result and an error", m.InvocationID)
	}
	return nil
}

package hubproto

import (
	"bytes"
	"fmt"
)

// MessagePack is the MessagePack hub protocol ("messagepack", transfer
// format Binary): each message is a VarInt length prefix followed by a
// MessagePack array whose first element is the message type. Arguments,
// stream items and results are kept as raw MessagePack (FormatMsgpack).
type MessagePack struct{}

// Name returns "messagepack".
func (MessagePack) Name() string { return NameMessagePack }

// Version returns 2, the highest version (2 adds Ack and Sequence).
func (MessagePack) Version() int { return 2 }

// TransferFormat returns "Binary".
func (MessagePack) TransferFormat() string { return TransferFormatBinary }

// Parse implements Protocol. A record's framed size includes its length
// prefix, as in ASP.NET's MaximumReceiveMessageSize check, and a declared
// length over the limit fails before the body has arrived. Invocations with
// 5 or 6 elements, Close with or without allowReconnect, and extra trailing
// array elements (ignored) are accepted.
func (MessagePack) Parse(buf []byte, maxMessageSize int) (msgs []Message, consumed int, err error) {
	for consumed < len(buf) {
		rest := buf[consumed:]
		n, size, err := readVarint(rest)
		if err != nil {
			return msgs, consumed, fmt.Errorf("messagepack record at offset %d: %w", consumed, err)
		}
		if size == 0 {
			break // partial length prefix
		}
		if maxMessageSize > 0 && size+n > maxMessageSize {
			return msgs, consumed, errorf(ErrMessageTooLarge,
				"messagepack record at offset %d declares %d bytes, limit is %d", consumed, size+n, maxMessageSize)
		}
		if len(rest) < size+n {
			break // partial body
		}
		m, ok, err := parseMsgpackRecord(rest[size : size+n])
		if err != nil {
			return msgs, consumed, fmt.Errorf("messagepack record at offset %d: %w", consumed, err)
		}
		consumed += size + n
		if ok {
			msgs = append(msgs, m)
		}
	}
	return msgs, consumed, nil
}

// parseMsgpackRecord parses one record body. ok is false for a record of an
// unknown type, which is skipped.
func parseMsgpackRecord(body []byte) (m Message, ok bool, err error) {
	r := mpReader{buf: body}
	count, err := r.readArrayLen()
	if err != nil {
		return Message{}, false, err
	}
	if count == 0 {
		return Message{}, false, r.errorf("empty message array")
	}
	typ, err := r.readInt64("message type")
	if err != nil {
		return Message{}, false, err
	}
	m.Type = MessageType(typ)
	if typ < 1 || !m.Type.Known() {
		return Message{}, false, nil
	}
	if want := mpMinElements[m.Type]; count < want {
		return Message{}, false, r.errorf("%v needs at least %d elements, got %d", m.Type, want, count)
	}
	read := 1
	switch m.Type {
	case Invocation, StreamInvocation:
		read, err = r.readInvocation(&m, count)
	case StreamItem:
		if err = r.readHeadersAndID(&m); err == nil {
			m.Item, err = r.readRaw()
		}
		read = 4
	case Completion:
		read, err = r.readCompletion(&m, count)
	case CancelInvocation:
		err = r.readHeadersAndID(&m)
		read = 3
	case Close:
		if count >= 2 {
			m.Error, _, err = r.readStringOrNil("error")
		}
		if err == nil && count >= 3 && !r.readNil() {
			m.AllowReconnect, err = r.readBool("allowReconnect")
		}
		read = min(count, 3)
	case Ack, Sequence:
		m.SequenceID, err = r.readInt64("sequenceId")
		read = 2
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("%v: %w", m.Type, err)
	}
	if f := m.missingField(); f != "" {
		return Message{}, false, r.errorf("%v: missing or empty %s", m.Type, f)
	}
	if err := r.skipN(count-read, 0); err != nil { // future extra elements
		return Message{}, false, err
	}
	if r.pos != len(body) {
		return Message{}, false, r.errorf("data after the message array")
	}
	return m, true, nil
}

// mpMinElements is the smallest array each message type may have.
var mpMinElements = [...]int{
	Invocation:       5,
	StreamItem:       4,
	Completion:       4,
	StreamInvocation: 5,
	CancelInvocation: 3,
	Ping:             1,
	Close:            1,
	Ack:              2,
	Sequence:         2,
}

// readHeaders reads the headers map; nil and an empty map give nil.
func (r *mpReader) readHeaders() (map[string]string, error) {
	if r.readNil() {
		return nil, nil
	}
	n, err := r.readMapLen()
	if err != nil || n == 0 {
		return nil, err
	}
	h := make(map[string]string, n)
	for range n {
		k, err := r.readString("header name")
		if err != nil {
			return nil, err
		}
		v, err := r.readString("header value")
		if err != nil {
			return nil, err
		}
		h[k] = v
	}
	return h, nil
}

// readHeadersAndID reads the headers and a required invocation id.
func (r *mpReader) readHeadersAndID(m *Message) (err error) {
	if m.Headers, err = r.readHeaders(); err != nil {
		return err
	}
	m.InvocationID, err = r.readString("invocationId")
	return err
}

// readRaw reads one value and returns a copy of it as a RawValue.
func (r *mpReader) readRaw() (RawValue, error) {
	raw, err := r.skipValue(1)
	if err != nil {
		return RawValue{}, err
	}
	return MsgpackValue(bytes.Clone(raw)), nil
}

// readInvocation reads the rest of an Invocation or StreamInvocation:
// headers, invocationId, target, arguments and optional streamIds.
func (r *mpReader) readInvocation(m *Message, count int) (read int, err error) {
	if m.Headers, err = r.readHeaders(); err != nil {
		return 0, err
	}
	if m.InvocationID, _, err = r.readStringOrNil("invocationId"); err != nil {
		return 0, err
	}
	if m.Target, err = r.readString("target"); err != nil {
		return 0, err
	}
	if m.Arguments, err = r.readArguments(); err != nil {
		return 0, err
	}
	if count < 6 {
		return 5, nil
	}
	m.StreamIDs, err = r.readStreamIDs()
	return 6, err
}

// readArguments reads the arguments array. All arguments share one copy of
// their bytes.
func (r *mpReader) readArguments() ([]RawValue, error) {
	n, err := r.readArrayLen()
	if err != nil || n == 0 {
		return nil, err
	}
	args := make([]RawValue, n)
	start := r.pos
	for i := range args {
		raw, err := r.skipValue(1)
		if err != nil {
			return nil, err
		}
		args[i] = MsgpackValue(raw)
	}
	store := bytes.Clone(r.buf[start:r.pos])
	off := start
	for i := range args {
		l := len(args[i].Data)
		args[i].Data = store[off-start : off-start+l : off-start+l]
		off += l
	}
	return args, nil
}

// readStreamIDs reads the streamIds array; nil and [] give nil.
func (r *mpReader) readStreamIDs() ([]string, error) {
	if r.readNil() {
		return nil, nil
	}
	n, err := r.readArrayLen()
	if err != nil || n == 0 {
		return nil, err
	}
	ids := make([]string, n)
	for i := range ids {
		if ids[i], err = r.readString("stream id"); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// Completion result kinds.
const (
	resultKindError = 1
	resultKindVoid  = 2
	resultKindValue = 3
)

// readCompletion reads headers, invocationId, resultKind and the result.
func (r *mpReader) readCompletion(m *Message, count int) (read int, err error) {
	if err = r.readHeadersAndID(m); err != nil {
		return 0, err
	}
	kind, err := r.readInt64("resultKind")
	if err != nil {
		return 0, err
	}
	switch kind {
	case resultKindVoid:
		return 4, nil
	case resultKindError, resultKindValue:
		if count < 5 {
			return 0, r.errorf("completion with result kind %d needs 5 elements", kind)
		}
		if kind == resultKindError {
			m.Error, _, err = r.readStringOrNil("error")
		} else {
			m.Result, err = r.readRaw()
			m.HasResult = true
		}
		return 5, err
	}
	return 0, r.errorf("invalid result kind %d", kind)
}

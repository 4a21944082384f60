package hubproto

import (
	"bytes"
	"fmt"
)

// recordSeparator ends every JSON record (and the handshake).
const recordSeparator = 0x1e

// JSON is the JSON hub protocol ("json", transfer format Text): each
// message is one JSON object followed by the record separator 0x1E.
// Arguments, stream items and results are kept as raw JSON (FormatJSON).
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return NameJSON }

// Version returns 2, the highest version (2 adds Ack and Sequence).
func (JSON) Version() int { return 2 }

// TransferFormat returns "Text".
func (JSON) TransferFormat() string { return TransferFormatText }

// Parse implements Protocol. A record's framed size includes its 0x1E, as
// in ASP.NET's MaximumReceiveMessageSize check. Property order is free (the
// JS client sends "type" last), unknown properties are ignored, and property
// names are case-sensitive.
func (JSON) Parse(buf []byte, maxMessageSize int) (msgs []Message, consumed int, err error) {
	if n := bytes.Count(buf, []byte{recordSeparator}); n > 1 {
		msgs = make([]Message, 0, n) // a frame of several records: one allocation, not a growing slice
	}
	for consumed < len(buf) {
		rest := buf[consumed:]
		window := rest
		if maxMessageSize > 0 && len(window) > maxMessageSize {
			window = window[:maxMessageSize]
		}
		i := bytes.IndexByte(window, recordSeparator)
		if i < 0 {
			if maxMessageSize > 0 && len(rest) >= maxMessageSize {
				return msgs, consumed, errorf(ErrMessageTooLarge,
					"json record at offset %d is larger than %d bytes", consumed, maxMessageSize)
			}
			break // partial record: wait for more data
		}
		m, ok, err := parseJSONRecord(rest[:i])
		if err != nil {
			return msgs, consumed, fmt.Errorf("json record at offset %d: %w", consumed, err)
		}
		consumed += i + 1
		if ok {
			msgs = append(msgs, m)
		}
	}
	return msgs, consumed, nil
}

// argSpan locates one argument inside the raw arguments array.
type argSpan struct{ start, end int }

// jsonFields collects the properties of one JSON record.
type jsonFields struct {
	typ                                   int64
	hasType, hasInvID, hasTarget, hasArgs bool
	hasItem, hasResult, hasError, hasSeq  bool
	invID, target, errMsg                 string
	allowReconnect                        bool
	seq                                   int64
	args, item, result                    []byte
	streamIDs                             []string
	headers                               map[string]string

	// The argument spans: the first few in an array that stays on the
	// stack with the struct, the rest in a slice.
	nspans    int
	spanArr   [8]argSpan
	spanExtra []argSpan
}

// addSpan records the span of the next argument.
func (f *jsonFields) addSpan(sp argSpan) {
	if f.nspans < len(f.spanArr) {
		f.spanArr[f.nspans] = sp
	} else {
		f.spanExtra = append(f.spanExtra, sp)
	}
	f.nspans++
}

// span returns the span of argument i.
func (f *jsonFields) span(i int) argSpan {
	if i < len(f.spanArr) {
		return f.spanArr[i]
	}
	return f.spanExtra[i-len(f.spanArr)]
}

// parseJSONRecord parses one record without its separator. ok is false for
// a well-formed record of an unknown type, which is skipped.
func parseJSONRecord(rec []byte) (m Message, ok bool, err error) {
	var f jsonFields
	s := jsonScanner{buf: rec}
	if err := s.readObject(func(key []byte) error { return s.readField(&f, key) }); err != nil {
		return Message{}, false, err
	}
	return f.message()
}

// readField reads the value of one property into f.
func (s *jsonScanner) readField(f *jsonFields, key []byte) (err error) {
	switch string(key) {
	case "type":
		f.typ, err = s.readInt64()
		f.hasType = true
	case "invocationId":
		f.invID, f.hasInvID, err = s.readNullableString()
	case "target":
		f.target, f.hasTarget, err = s.readNullableString()
	case "error":
		f.errMsg, f.hasError, err = s.readNullableString()
	case "arguments":
		err = s.readArguments(f)
	case "item":
		f.item, err = s.skipValue(1)
		f.hasItem = true
	case "result":
		f.result, err = s.skipValue(1)
		f.hasResult = true
	case "allowReconnect":
		if !s.isNull() {
			f.allowReconnect, err = s.readBool()
		}
	case "sequenceId":
		f.seq, err = s.readInt64()
		f.hasSeq = true
	case "streamIds":
		f.streamIDs, err = s.readStringArray()
	case "headers":
		f.headers, err = s.readHeaders()
	default:
		_, err = s.skipValue(1)
	}
	return err
}

// readNullableString reads a string or null; present is false for null.
func (s *jsonScanner) readNullableString() (v string, present bool, err error) {
	if s.isNull() {
		return "", false, nil
	}
	if s.peek() != '"' {
		return "", false, s.errorf("want a string")
	}
	v, err = s.readStringValue()
	return v, err == nil, err
}

// readArguments reads the arguments array, recording each element's span.
func (s *jsonScanner) readArguments(f *jsonFields) error {
	if s.peek() != '[' {
		return s.errorf("arguments must be an array")
	}
	start := s.pos
	s.pos++
	f.nspans, f.spanExtra = 0, f.spanExtra[:0]
	more := s.peek() != ']'
	if !more {
		s.pos++
	}
	for more {
		s.skipWS()
		at := s.pos
		if _, err := s.skipValue(1); err != nil {
			return err
		}
		f.addSpan(argSpan{at - start, s.pos - start})
		var err error
		if more, err = s.next(']'); err != nil {
			return err
		}
	}
	f.args = s.buf[start:s.pos]
	f.hasArgs = true
	return nil
}

// readStringArray reads an array of strings; null and [] give nil.
func (s *jsonScanner) readStringArray() ([]string, error) {
	if s.isNull() {
		return nil, nil
	}
	if err := s.expect('['); err != nil {
		return nil, err
	}
	if s.peek() == ']' {
		s.pos++
		return nil, nil
	}
	var out []string
	for more := true; more; {
		v, err := s.readStringValue()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if more, err = s.next(']'); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readHeaders reads an object of string values; null and {} give nil.
func (s *jsonScanner) readHeaders() (map[string]string, error) {
	if s.isNull() {
		return nil, nil
	}
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	if s.peek() == '}' {
		s.pos++
		return nil, nil
	}
	out := make(map[string]string)
	for more := true; more; {
		k, err := s.readStringValue()
		if err != nil {
			return nil, err
		}
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		if s.peek() != '"' {
			return nil, s.errorf("header %q must be a string", k)
		}
		v, err := s.readStringValue()
		if err != nil {
			return nil, err
		}
		out[k] = v
		if more, err = s.next('}'); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// message validates the collected properties for the message type and
// builds the Message, copying raw values out of the input buffer. As in
// ASP.NET, a target or invocation id that is required must be non-empty.
func (f *jsonFields) message() (Message, bool, error) {
	if !f.hasType {
		return Message{}, false, errorf(ErrMalformed, "missing required property 'type'")
	}
	t := MessageType(f.typ)
	if f.typ < 1 || !t.Known() {
		return Message{}, false, nil
	}
	m := Message{Type: t}
	missing := ""
	switch t {
	case Invocation, StreamInvocation:
		if !f.hasArgs {
			missing = "arguments"
		}
		m.InvocationID, m.Target, m.StreamIDs, m.Headers = f.invID, f.target, f.streamIDs, f.headers
		if f.nspans > 0 {
			store := bytes.Clone(f.args)
			m.Arguments = make([]RawValue, f.nspans)
			for i := range m.Arguments {
				sp := f.span(i)
				m.Arguments[i] = JSONValue(store[sp.start:sp.end:sp.end])
			}
		}
	case StreamItem:
		if !f.hasItem {
			missing = "item"
		}
		m.InvocationID, m.Headers = f.invID, f.headers
		m.Item = JSONValue(bytes.Clone(f.item))
	case Completion:
		if f.hasError && f.hasResult {
			return Message{}, false, errorf(ErrMalformed, "completion: the 'error' and 'result' properties are mutually exclusive")
		}
		m.InvocationID, m.Headers, m.Error, m.HasResult = f.invID, f.headers, f.errMsg, f.hasResult
		if f.hasResult {
			m.Result = JSONValue(bytes.Clone(f.result))
		}
	case CancelInvocation:
		m.InvocationID, m.Headers = f.invID, f.headers
	case Close:
		m.Error, m.AllowReconnect = f.errMsg, f.allowReconnect
	case Ack, Sequence:
		if !f.hasSeq {
			missing = "sequenceId"
		}
		m.SequenceID = f.seq
	}
	if missing == "" {
		missing = m.missingField()
	}
	if missing != "" {
		return Message{}, false, errorf(ErrMalformed, "%v: missing required property '%s'", t, missing)
	}
	return m, true, nil
}

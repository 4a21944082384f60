package hubproto

import "strconv"

// jsonPing is the framed JSON Ping record.
var jsonPing = []byte("{\"type\":6}\x1e")

// PingRecord returns {"type":6} followed by 0x1E. The slice is shared and
// must not be modified.
func (JSON) PingRecord() []byte { return jsonPing[:len(jsonPing):len(jsonPing)] }

// AppendClose appends a framed Close record, for example
// {"type":7,"error":"...","allowReconnect":true}.
func (JSON) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	dst = append(dst, `{"type":7`...)
	if errMsg != "" {
		dst = appendJSONString(append(dst, `,"error":`...), errMsg)
	}
	if allowReconnect {
		dst = append(dst, `,"allowReconnect":true`...)
	}
	return append(dst, '}', recordSeparator)
}

// AppendInvocation implements Protocol with AppendInvocationJSON; it never
// fails.
func (JSON) AppendInvocation(dst []byte, target string, argsJSON []byte) ([]byte, error) {
	return AppendInvocationJSON(dst, target, argsJSON), nil
}

// AppendInvocationJSON appends the framed JSON record
// {"type":1,"target":<target>,"arguments":<argsJSON>} + 0x1E, the
// fire-and-forget Invocation that fan-out sends to every JSON client.
// argsJSON must be a valid JSON array; it is copied verbatim and not
// validated (empty means []). target should be non-empty. It allocates only
// if dst must grow.
func AppendInvocationJSON(dst []byte, target string, argsJSON []byte) []byte {
	dst = appendJSONString(append(dst, `{"type":1,"target":`...), target)
	dst = append(dst, `,"arguments":`...)
	if len(argsJSON) == 0 {
		dst = append(dst, '[', ']')
	} else {
		dst = append(dst, argsJSON...)
	}
	return append(dst, '}', recordSeparator)
}

// Append implements Protocol. Properties are written in ASP.NET's order
// (type, headers, invocationId, target, arguments, streamIds / item /
// result / error, ...), headers with sorted keys. MessagePack raw values are
// converted to JSON.
func (JSON) Append(dst []byte, m *Message) ([]byte, error) {
	out, err := appendJSONMessage(dst, m)
	if err != nil {
		return dst, err
	}
	return append(out, recordSeparator), nil
}

// appendJSONMessage appends the JSON object of m without the separator.
func appendJSONMessage(dst []byte, m *Message) ([]byte, error) {
	if err := m.checkEncodable(); err != nil {
		return dst, err
	}
	dst = strconv.AppendInt(append(dst, `{"type":`...), int64(m.Type), 10)
	if m.Type.Trackable() && len(m.Headers) > 0 {
		dst = appendJSONStringMap(append(dst, `,"headers":`...), m.Headers)
	}
	var err error
	switch m.Type {
	case Invocation, StreamInvocation:
		if m.InvocationID != "" {
			dst = appendJSONString(append(dst, `,"invocationId":`...), m.InvocationID)
		}
		dst = appendJSONString(append(dst, `,"target":`...), m.Target)
		dst = append(dst, `,"arguments":[`...)
		for i := range m.Arguments {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = m.Arguments[i].AppendJSON(dst); err != nil {
				return dst, err
			}
		}
		dst = append(dst, ']')
		if len(m.StreamIDs) > 0 {
			dst = appendJSONStringArray(append(dst, `,"streamIds":`...), m.StreamIDs)
		}
	case StreamItem:
		dst = appendJSONString(append(dst, `,"invocationId":`...), m.InvocationID)
		if dst, err = m.Item.AppendJSON(append(dst, `,"item":`...)); err != nil {
			return dst, err
		}
	case Completion:
		dst = appendJSONString(append(dst, `,"invocationId":`...), m.InvocationID)
		switch {
		case m.Error != "":
			dst = appendJSONString(append(dst, `,"error":`...), m.Error)
		case m.HasResult:
			if dst, err = m.Result.AppendJSON(append(dst, `,"result":`...)); err != nil {
				return dst, err
			}
		}
	case CancelInvocation:
		dst = appendJSONString(append(dst, `,"invocationId":`...), m.InvocationID)
	case Close:
		if m.Error != "" {
			dst = appendJSONString(append(dst, `,"error":`...), m.Error)
		}
		if m.AllowReconnect {
			dst = append(dst, `,"allowReconnect":true`...)
		}
	case Ack, Sequence:
		dst = strconv.AppendInt(append(dst, `,"sequenceId":`...), m.SequenceID, 10)
	}
	return append(dst, '}'), nil
}

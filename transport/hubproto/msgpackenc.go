package hubproto

// mpPing is the framed MessagePack Ping record: length 2, then [6].
var mpPing = []byte{0x02, mpFixArray | 1, byte(Ping)}

// PingRecord returns the framed Ping record (0x02 0x91 0x06). The slice is
// shared and must not be modified.
func (MessagePack) PingRecord() []byte { return mpPing[:len(mpPing):len(mpPing)] }

// AppendClose appends a framed Close record [7, error|nil, allowReconnect].
// The third element is always written, as ASP.NET does.
func (MessagePack) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	n := 4
	if errMsg != "" {
		n += mpStrHeaderLen(len(errMsg)) + len(errMsg) - 1
	}
	dst = appendVarint(dst, n)
	dst = mpAppendStringOrNil(append(dst, mpFixArray|3, byte(Close)), errMsg)
	return mpAppendBool(dst, allowReconnect)
}

// AppendInvocation implements Protocol with AppendInvocationMsgpack.
func (MessagePack) AppendInvocation(dst []byte, target string, argsJSON []byte) ([]byte, error) {
	return AppendInvocationMsgpack(dst, target, argsJSON)
}

// AppendInvocationMsgpack appends the framed MessagePack record
// [1, {}, nil, target, [args...], []] of a fire-and-forget Invocation (the
// 6-element layout ASP.NET writes), the message that fan-out sends to every
// MessagePack client. argsJSON is a JSON array of the arguments (empty means
// none), converted with the rules of JSONToMsgpack; invalid JSON, or JSON
// that is not an array, fails with ErrMalformed and leaves dst unchanged.
// target should be non-empty. It allocates only if dst must grow.
func AppendInvocationMsgpack(dst []byte, target string, argsJSON []byte) ([]byte, error) {
	dst, start, pre := appendInvocationMsgpackHead(dst, target, len(argsJSON))
	if len(argsJSON) == 0 {
		dst = append(dst, mpFixArray)
	} else {
		s := jsonScanner{buf: argsJSON}
		if s.peek() != '[' {
			return dst[:start], s.errorf("arguments must be a JSON array")
		}
		var err error
		if dst, err = JSONToMsgpack(dst, argsJSON); err != nil {
			return dst[:start], err
		}
	}
	return appendInvocationMsgpackTail(dst, start, pre)
}

// appendInvocationMsgpackHead starts the framed record of a fire-and-forget
// Invocation of target: it reserves the length prefix (sized for a body of
// about argsLen bytes of arguments) and appends [1, {}, nil, target. The
// caller appends the arguments array, then calls
// appendInvocationMsgpackTail with start and pre.
func appendInvocationMsgpackHead(dst []byte, target string, argsLen int) (out []byte, start, pre int) {
	start = len(dst)
	pre = varintLen(argsLen + len(target) + 8)
	dst = append(dst, 0, 0, 0, 0, 0)[:start+pre]
	dst = append(dst, mpFixArray|6, byte(Invocation), mpFixMap, mpNil)
	return mpAppendString(dst, target), start, pre
}

// appendInvocationMsgpackTail ends what appendInvocationMsgpackHead began:
// the empty stream ids, and the length prefix. On error dst is cut back to
// start.
func appendInvocationMsgpackTail(dst []byte, start, pre int) ([]byte, error) {
	return fixPrefix(append(dst, mpFixArray), start, pre) // no stream ids
}

// fixPrefix writes the length prefix of the body that follows the pre bytes
// reserved at dst[start:], moving the body if the prefix needs another size.
func fixPrefix(dst []byte, start, pre int) ([]byte, error) {
	n := len(dst) - start - pre
	if n > maxBodyLen {
		return dst[:start], errorf(ErrInvalidMessage, "messagepack body of %d bytes exceeds 2GB", n)
	}
	need := varintLen(n)
	switch {
	case need > pre:
		end := len(dst)
		dst = append(dst, 0, 0, 0, 0)[:end+need-pre]
		copy(dst[start+need:], dst[start+pre:end])
	case need < pre:
		copy(dst[start+need:], dst[start+pre:])
		dst = dst[:start+need+n]
	}
	putVarint(dst[start:start+need], n)
	return dst, nil
}

// Append implements Protocol. Arrays follow ASP.NET's layouts: Invocation
// and StreamInvocation always have 6 elements (streamIds may be empty);
// Close always has 3; a void Completion has 4. Headers are written with sorted keys, and JSON raw
// values are converted to MessagePack.
func (MessagePack) Append(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	pre := varintLen(estimateBody(m))
	dst = append(dst, 0, 0, 0, 0, 0)[:start+pre]
	dst, err := appendMsgpackBody(dst, m)
	if err != nil {
		return dst[:start], err
	}
	return fixPrefix(dst, start, pre)
}

// estimateBody guesses the body size so that the prefix is usually right.
func estimateBody(m *Message) int {
	n := 16 + len(m.InvocationID) + len(m.Target) + len(m.Error) + len(m.Item.Data) + len(m.Result.Data)
	for i := range m.Arguments {
		n += len(m.Arguments[i].Data)
	}
	return n
}

// appendMsgpackBody appends the MessagePack array of m without a prefix.
func appendMsgpackBody(dst []byte, m *Message) ([]byte, error) {
	if err := m.checkEncodable(); err != nil {
		return dst, err
	}
	var err error
	switch m.Type {
	case Invocation, StreamInvocation:
		dst = append(dst, mpFixArray|6, byte(m.Type))
		dst = mpAppendStringMap(dst, m.Headers)
		if m.Type == Invocation {
			dst = mpAppendStringOrNil(dst, m.InvocationID)
		} else {
			dst = mpAppendString(dst, m.InvocationID)
		}
		dst = mpAppendArrayHeader(mpAppendString(dst, m.Target), len(m.Arguments))
		for i := range m.Arguments {
			if dst, err = m.Arguments[i].AppendMsgpack(dst); err != nil {
				return dst, err
			}
		}
		dst = mpAppendArrayHeader(dst, len(m.StreamIDs))
		for _, id := range m.StreamIDs {
			dst = mpAppendString(dst, id)
		}
	case StreamItem:
		dst = append(dst, mpFixArray|4, byte(StreamItem))
		dst = mpAppendString(mpAppendStringMap(dst, m.Headers), m.InvocationID)
		return m.Item.AppendMsgpack(dst)
	case Completion:
		n := 5
		if m.Error == "" && !m.HasResult {
			n = 4
		}
		dst = append(dst, mpFixArray|byte(n), byte(Completion))
		dst = mpAppendString(mpAppendStringMap(dst, m.Headers), m.InvocationID)
		switch {
		case m.Error != "":
			dst = mpAppendString(append(dst, resultKindError), m.Error)
		case m.HasResult:
			return m.Result.AppendMsgpack(append(dst, resultKindValue))
		default:
			dst = append(dst, resultKindVoid)
		}
	case CancelInvocation:
		dst = append(dst, mpFixArray|3, byte(CancelInvocation))
		dst = mpAppendString(mpAppendStringMap(dst, m.Headers), m.InvocationID)
	case Ping:
		dst = append(dst, mpFixArray|1, byte(Ping))
	case Close:
		dst = mpAppendStringOrNil(append(dst, mpFixArray|3, byte(Close)), m.Error)
		dst = mpAppendBool(dst, m.AllowReconnect)
	case Ack, Sequence:
		dst = mpAppendInt(append(dst, mpFixArray|2, byte(m.Type)), m.SequenceID)
	}
	return dst, nil
}

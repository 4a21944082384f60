package hubproto

import (
	"bytes"
	"fmt"
)

// HandshakeRequest is the client's first record on a new transport:
// {"protocol":"json"|"messagepack","version":N} followed by 0x1E. It is
// always JSON, whatever protocol it asks for.
type HandshakeRequest struct {
	// Protocol is the requested hub protocol name (see Lookup).
	Protocol string
	// Version is the requested protocol version; 2 asks for stateful
	// reconnect, 1 does not.
	Version int
}

// ParseHandshakeRequest parses the handshake at the start of buf. If buf
// does not yet hold the whole handshake (no 0x1E), ok is false, err is nil
// and rest is buf; the caller should wait for more data, bounding how much
// it buffers (ASP.NET cancels a handshake larger than the maximum message
// size). Otherwise rest is whatever followed the 0x1E in buf: the first
// protocol records, which may be binary. Unknown properties are ignored; a
// missing protocol or version, or bad JSON, fails with ErrMalformed.
func ParseHandshakeRequest(buf []byte) (req HandshakeRequest, rest []byte, ok bool, err error) {
	i := bytes.IndexByte(buf, recordSeparator)
	if i < 0 {
		return HandshakeRequest{}, buf, false, nil
	}
	var hasProtocol, hasVersion bool
	s := jsonScanner{buf: buf[:i]}
	err = s.readObject(func(key []byte) error {
		var err error
		switch string(key) {
		case "protocol":
			req.Protocol, hasProtocol, err = s.readNullableString()
		case "version":
			var v int64
			v, err = s.readInt64()
			req.Version, hasVersion = int(v), true
		default:
			_, err = s.skipValue(1)
		}
		return err
	})
	switch {
	case err != nil:
	case !hasProtocol:
		err = errorf(ErrMalformed, "missing required property 'protocol'")
	case !hasVersion:
		err = errorf(ErrMalformed, "missing required property 'version'")
	}
	if err != nil {
		return HandshakeRequest{}, buf, false, fmt.Errorf("handshake request: %w", err)
	}
	return req, buf[i+1:], true, nil
}

// AppendHandshakeRequest appends a handshake request record, as a client
// sends it. It is meant for test clients.
func AppendHandshakeRequest(dst []byte, protocol string, version int) []byte {
	dst = appendJSONString(append(dst, `{"protocol":`...), protocol)
	dst = fmt.Appendf(dst, `,"version":%d}`, version)
	return append(dst, recordSeparator)
}

// handshakeOK is the successful handshake response.
var handshakeOK = []byte("{}\x1e")

// EncodeHandshakeResponse returns the handshake response record: {} + 0x1E
// when errMsg is empty, otherwise {"error":errMsg} + 0x1E, after which the
// server closes the connection. The result is a new slice.
func EncodeHandshakeResponse(errMsg string) []byte {
	if errMsg == "" {
		return bytes.Clone(handshakeOK)
	}
	dst := appendJSONString(append(make([]byte, 0, len(errMsg)+16), `{"error":`...), errMsg)
	return append(dst, '}', recordSeparator)
}

// ParseHandshakeResponse parses the server's handshake response at the start
// of buf, as a client does. ok is false (and rest is buf) while the response
// is incomplete. errMsg is the server's error, if any. A record that has a
// "type" property is a hub message, not a handshake response, and fails with
// ErrMalformed, as in the JS client. It is meant for test clients.
func ParseHandshakeResponse(buf []byte) (errMsg string, rest []byte, ok bool, err error) {
	i := bytes.IndexByte(buf, recordSeparator)
	if i < 0 {
		return "", buf, false, nil
	}
	s := jsonScanner{buf: buf[:i]}
	err = s.readObject(func(key []byte) error {
		var err error
		switch string(key) {
		case "error":
			errMsg, _, err = s.readNullableString()
		case "type":
			err = errorf(ErrMalformed, "expected a handshake response, got a hub message")
		default:
			_, err = s.skipValue(1)
		}
		return err
	})
	if err != nil {
		return "", buf, false, fmt.Errorf("handshake response: %w", err)
	}
	return errMsg, buf[i+1:], true, nil
}

// readObject reads a whole top-level object, calling field for each
// property with the decoded key; field must consume the value.
func (s *jsonScanner) readObject(field func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	more := s.peek() != '}'
	if !more {
		s.pos++
	}
	for more {
		content, escaped, err := s.readString()
		if err != nil {
			return err
		}
		key := content
		if escaped { // rare: property names are plain ASCII in practice
			key = appendUnescaped(nil, content)
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		if more, err = s.next('}'); err != nil {
			return err
		}
	}
	if s.skipWS(); s.pos != len(s.buf) {
		return s.errorf("data after the object")
	}
	return nil
}

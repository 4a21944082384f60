package hubproto

import "strings"

// Protocol names as sent in the handshake, and transfer formats as listed in
// the negotiate response.
const (
	// NameJSON is the handshake name of the JSON hub protocol.
	NameJSON = "json"
	// NameMessagePack is the handshake name of the MessagePack hub protocol.
	NameMessagePack = "messagepack"
	// TransferFormatText is the transfer format of JSON (WebSocket text
	// frames; usable on every transport).
	TransferFormatText = "Text"
	// TransferFormatBinary is the transfer format of MessagePack (WebSocket
	// binary frames; never Server-Sent Events).
	TransferFormatBinary = "Binary"
)

// Protocol is one hub protocol: it frames, parses and encodes hub messages.
// Implementations are stateless values, safe for concurrent use.
type Protocol interface {
	// Name is the protocol name used in the handshake.
	Name() string
	// Version is the highest protocol version supported; a handshake asking
	// for any version up to it is accepted (2 enables stateful reconnect).
	Version() int
	// TransferFormat is TransferFormatText or TransferFormatBinary.
	TransferFormat() string

	// Parse decodes every complete record at the start of buf and returns
	// the messages and the number of bytes they used; the caller keeps
	// buf[consumed:] (a partial record) and calls Parse again when more
	// data has arrived. A record whose framed size exceeds maxMessageSize
	// (if > 0) fails with ErrMessageTooLarge and a bad record with
	// ErrMalformed; the messages before it are still returned, with
	// consumed pointing at the bad record. Records of unknown types are
	// consumed and skipped, for forward compatibility. The messages never
	// reference buf.
	Parse(buf []byte, maxMessageSize int) (msgs []Message, consumed int, err error)

	// Append appends m as one complete framed record. Appending several
	// records to one buffer yields a valid multi-record payload. On error
	// (ErrInvalidMessage, or a RawValue that cannot be converted) dst is
	// returned unchanged.
	Append(dst []byte, m *Message) ([]byte, error)

	// AppendInvocation appends the framed record of an Invocation without
	// invocationId, the common fan-out message, from argsJSON, a JSON
	// array of the arguments (empty means no arguments).
	AppendInvocation(dst []byte, target string, argsJSON []byte) ([]byte, error)

	// AppendClose appends a framed Close record. An empty errMsg means a
	// close without error.
	AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte

	// PingRecord returns the framed Ping record. The slice is shared and
	// must not be modified.
	PingRecord() []byte
}

// Lookup returns the protocol with the given handshake name (matched
// case-insensitively, as ASP.NET does), or nil if it is not supported.
func Lookup(name string) Protocol {
	switch {
	case strings.EqualFold(name, NameJSON):
		return JSON{}
	case strings.EqualFold(name, NameMessagePack):
		return MessagePack{}
	}
	return nil
}

// Compile-time checks that both protocols implement Protocol.
var (
	_ Protocol = JSON{}
	_ Protocol = MessagePack{}
)

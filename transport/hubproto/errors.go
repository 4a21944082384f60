package hubproto

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is); the wrapping text says which record or value was
// at fault.
var (
	// ErrMalformed reports input that is not a valid hub protocol record:
	// bad JSON or MessagePack, a missing required property, a property of the
	// wrong type, or an invalid length prefix.
	ErrMalformed = errors.New("hubproto: malformed message")

	// ErrMessageTooLarge reports a record, or a declared MessagePack length,
	// that is larger than the maximum message size given to Parse. The caller
	// should close the connection, as ASP.NET does.
	ErrMessageTooLarge = errors.New("hubproto: message too large")

	// ErrInvalidMessage reports a Message that cannot be encoded: an unknown
	// type, a missing target or invocation id (see Message), or a Completion
	// that has both an Error and a result.
	ErrInvalidMessage = errors.New("hubproto: invalid message")

	// ErrUnsupportedValue reports a value that has no representation in the
	// target encoding, such as a MessagePack extension type other than the
	// timestamp when converting to JSON, or a map key that is an array.
	ErrUnsupportedValue = errors.New("hubproto: unsupported value")
)

// errorf returns an error that wraps sentinel, with a formatted context.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

package fsm

import (
	"fmt"

	"github.com/backplane/backplane/transport/hubproto"
)

// validateMsgpackArguments checks a publish's optional MessagePack
// arguments: absent (nil), or exactly one well-formed MessagePack array.
// The check is the same on every replica and never panics on any input.
func validateMsgpackArguments(args []byte) error {
	if args == nil {
		return nil
	}
	if err := hubproto.ValidateMsgpackArray(args); err != nil {
		return fmt.Errorf("%w: messagepack arguments: %w", ErrInvalidCommand, err)
	}
	return nil
}

package fsm

import (
	"errors"
	"fmt"
)

// Parsing is the one place where a command's bytes become a typed command.
// Apply and the edge (ValidateCommand, called by the leader before it
// proposes anything) share it, so what the edge accepts apply accepts, and
// what apply cannot use every replica rejects in the same way: a command
// that arrives from the network or from the log never panics a replica.

// MaxTokenHashLen bounds a stateful connection's token hash: it is a store
// key, and bbolt rejects empty keys and keys over 32 KiB.
const MaxTokenHashLen = 64

// ValidateCommand decodes c and checks every field that does not depend on
// the replicated state, exactly as apply will. An error wraps
// ErrInvalidCommand (or ErrUnknownCommand for an unknown optional type):
// the command must not be proposed.
func ValidateCommand(c Command) error {
	_, err := parseCommand(c)
	return err
}

// checkpointBatch is a decoded CmdCheckpoint.
type checkpointBatch struct {
	holder string
	cps    []rawCheckpoint
}

type rawCheckpoint struct {
	hub, conn string
	seq       uint64
	pos       []byte
}

// nodeRemove is a decoded CmdNodeRemove.
type nodeRemove struct{ id string }

// parseCommand decodes and checks c. It returns one of *Publish,
// *Membership, *Connection, *StatefulOpen, *Invocation, *checkpointBatch,
// *NodeInfo, *nodeRemove, *parsedExecute, *UserGroupTTL or *tick. Byte slices in the result alias c.
func parseCommand(c Command) (any, error) {
	if len(c) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	t := c.Type()
	payload := c[1:]
	v, err := parseKnown(t&^IgnoreUnknownFlag, payload)
	if v == nil && err == nil {
		if t&IgnoreUnknownFlag != 0 {
			return nil, fmt.Errorf("%w: type %d", ErrUnknownCommand, byte(t))
		}
		return nil, fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, byte(t))
	}
	if err != nil && !errors.Is(err, ErrInvalidCommand) {
		err = fmt.Errorf("%w: %s: %w", ErrInvalidCommand, t&^IgnoreUnknownFlag, err)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// parseKnown decodes a payload of a known type; (nil, nil) means the type
// is not known. Decoding errors wrap ErrCorrupt; parseCommand wraps them in
// ErrInvalidCommand too.
func parseKnown(t CommandType, payload []byte) (any, error) {
	switch t {
	case CmdPublish:
		p, err := decodePublish(payload)
		if err != nil {
			return nil, err
		}
		return p, ValidatePublish(p)
	case CmdGroupAdd, CmdGroupRemove:
		m, err := decodeMembership(payload)
		if err != nil {
			return nil, err
		}
		return m, ValidateMembership(m, t == CmdGroupRemove)
	case CmdConnOpen, CmdConnClose, CmdConnExpire:
		conn, err := decodeConnection(payload)
		if err != nil {
			return nil, err
		}
		return conn, validateConnection(conn.Hub, conn.ConnID)
	case CmdStatefulOpen:
		d := decoder{buf: payload}
		o := &StatefulOpen{Hub: d.string(), ConnID: d.string(), UserID: d.string(), NodeID: d.string(), Protocol: d.string()}
		o.TokenHash = d.bytes()
		if err := d.done("stateful open"); err != nil {
			return nil, err
		}
		if len(o.TokenHash) == 0 || len(o.TokenHash) > MaxTokenHashLen {
			return nil, fmt.Errorf("token hash must be 1 to %d bytes", MaxTokenHashLen)
		}
		return o, validateConnection(o.Hub, o.ConnID)
	case CmdInvocation:
		d := decoder{buf: payload}
		inv := &Invocation{Hub: d.string(), ConnID: d.string(), InvocationID: d.string(), ClientSeq: d.uvarint(), Error: d.string()}
		inv.Inner = Command(d.bytes())
		if err := inv.checkAppValue(inv.AppValue.decode(&d)); err != nil {
			return nil, err
		}
		if err := d.done("invocation"); err != nil {
			return nil, err
		}
		if err := validateConnection(inv.Hub, inv.ConnID); err != nil {
			return nil, err
		}
		if len(inv.Inner) > 0 {
			switch inv.Inner.Type() &^ IgnoreUnknownFlag {
			case CmdPublish, CmdGroupAdd, CmdGroupRemove:
			default:
				return nil, fmt.Errorf("an invocation may carry a publish or a membership change, not %s", inv.Inner.Type())
			}
			// A command the client asked for may be rejected on apply, with
			// a completion that says why; one that cannot even be decoded
			// never came from this code.
			if _, err := parseCommand(inv.Inner); errors.Is(err, ErrCorrupt) {
				return nil, fmt.Errorf("invocation's command: %w", err)
			}
		}
		return inv, nil
	case CmdCheckpoint:
		return decodeCheckpoints(payload)
	case CmdExecute:
		return parseExecute(payload)
	case CmdUserGroupTTL:
		return parseUserGroupTTL(payload)
	case CmdTick:
		return parseTick(payload)
	case CmdClusterLevel &^ IgnoreUnknownFlag:
		return parseClusterLevel(payload)
	case CmdNodeInfo:
		n, err := decodeNodeInfo(payload)
		if err != nil {
			return nil, err
		}
		return n, ValidateName("node", n.ID)
	case CmdNodeRemove:
		d := decoder{buf: payload}
		r := &nodeRemove{id: d.string()}
		if err := d.done("node remove"); err != nil {
			return nil, err
		}
		return r, ValidateName("node", r.id)
	}
	return nil, nil
}

func validateConnection(hub, connID string) error {
	if err := ValidateHub(hub); err != nil {
		return err
	}
	return ValidateName("connection", connID)
}

func decodeCheckpoints(payload []byte) (*checkpointBatch, error) {
	d := decoder{buf: payload}
	b := &checkpointBatch{holder: d.string()}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.fail("checkpoint count")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		b.cps = append(b.cps, rawCheckpoint{hub: d.string(), conn: d.string(), seq: d.uvarint(), pos: d.bytes()})
	}
	if err := d.done("checkpoints"); err != nil {
		return nil, err
	}
	return b, nil
}

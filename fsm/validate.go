package fsm

import (
	"fmt"
	"unicode/utf8"
)

// Limits on names, shared by the edge (HTTP handlers) and the state machine,
// so a command that passed the edge is never rejected on apply.
const (
	MaxHubNameLen   = 128  // Azure SignalR's rule
	MaxGroupNameLen = 1024 // Azure SignalR's rule
	MaxNameLen      = 1024 // users and connection ids
	MaxTargetLen    = 1024
	MaxNamesPerSend = 1000 // groups, users or connections in one publish
	// MaxIdempotencyKeyLen bounds a publish's idempotency key in bytes: the
	// key is a store key, and bbolt rejects keys over 32 KiB.
	MaxIdempotencyKeyLen = 1024
)

// ValidateHub checks a hub name: a letter, then letters, digits, '_' and
// '-', at most 128 characters. A name with '-' also needs cluster feature
// level 1 (see HubLevel), which apply checks.
func ValidateHub(hub string) error {
	if hub == "" || len(hub) > MaxHubNameLen {
		return fmt.Errorf("%w: hub name must be 1 to %d characters", ErrInvalidCommand, MaxHubNameLen)
	}
	for i := 0; i < len(hub); i++ {
		c := hub[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return fmt.Errorf("%w: hub name %q must start with a letter", ErrInvalidCommand, hub)
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' && c != '-' {
			return fmt.Errorf("%w: hub name %q may hold only letters, digits, '_' and '-'", ErrInvalidCommand, hub)
		}
	}
	return nil
}

// ValidateGroup checks a group name: 1 to 1024 characters of valid UTF-8.
func ValidateGroup(group string) error {
	return validateName("group", group, MaxGroupNameLen)
}

// ValidateName checks a user id or connection id (what says which).
func ValidateName(what, name string) error {
	return validateName(what, name, MaxNameLen)
}

func validateName(what, name string, max int) error {
	if name == "" || utf8.RuneCountInString(name) > max {
		return fmt.Errorf("%w: %s name must be 1 to %d characters", ErrInvalidCommand, what, max)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s name is not valid UTF-8", ErrInvalidCommand, what)
	}
	return nil
}

// ValidatePublish checks a publish command's fields. It does not parse the
// JSON arguments (the edge checks they are a JSON array); MessagePack
// arguments must be one well-formed MessagePack array.
func ValidatePublish(p *Publish) error {
	if err := validateMsgpackArguments(p.MsgpackArguments); err != nil {
		return err
	}
	if err := ValidateHub(p.Hub); err != nil {
		return err
	}
	if p.Target == "" || len(p.Target) > MaxTargetLen {
		return fmt.Errorf("%w: target must be 1 to %d bytes", ErrInvalidCommand, MaxTargetLen)
	}
	if len(p.IdempotencyKey) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%w: idempotency key must be at most %d bytes", ErrInvalidCommand, MaxIdempotencyKeyLen)
	}
	if len(p.Names) > MaxNamesPerSend || len(p.Excluded) > MaxNamesPerSend {
		return fmt.Errorf("%w: at most %d names per send", ErrInvalidCommand, MaxNamesPerSend)
	}
	var kind string
	switch p.Audience {
	case ToAll:
		if len(p.Names) != 0 {
			return fmt.Errorf("%w: a send to all names no groups, users or connections", ErrInvalidCommand)
		}
		kind = "connection"
	case ToGroups:
		kind = "group"
	case ToUsers:
		kind = "user"
	case ToConnections:
		kind = "connection"
	default:
		return fmt.Errorf("%w: unknown audience %d", ErrInvalidCommand, p.Audience)
	}
	if p.Audience != ToAll && len(p.Names) == 0 {
		return fmt.Errorf("%w: a send to %s names at least one", ErrInvalidCommand, p.Audience)
	}
	for _, n := range p.Names {
		if err := validateName(kind, n, maxFor(p.Audience)); err != nil {
			return err
		}
	}
	for _, n := range p.Excluded {
		if err := ValidateName("excluded connection", n); err != nil {
			return err
		}
	}
	return nil
}

func maxFor(a Audience) int {
	if a == ToGroups {
		return MaxGroupNameLen
	}
	return MaxNameLen
}

// ValidateMembership checks a group membership command. An empty group is
// allowed for removal from every group (remove=true).
func ValidateMembership(m *Membership, remove bool) error {
	if err := ValidateHub(m.Hub); err != nil {
		return err
	}
	if !(remove && m.Group == "") {
		if err := ValidateGroup(m.Group); err != nil {
			return err
		}
	}
	if m.Kind != MemberConnection && m.Kind != MemberUser {
		return fmt.Errorf("%w: unknown member kind %d", ErrInvalidCommand, m.Kind)
	}
	return ValidateName("member", m.Member)
}

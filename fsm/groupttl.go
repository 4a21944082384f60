package fsm

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A user can be added to a group for a time (the REST API's ttl). The
// expiry is the adding entry's proposer stamp plus the ttl, and a
// membership expires when an entry stamped at or after its expiry is
// applied, before that entry's commands: every replica removes it at the
// same log position, and a message in a later entry no longer reaches the
// user through the group. On an idle cluster the leader proposes a tick (a
// command that carries nothing) once an expiry is due, so the removal does
// not wait for the next write.
//
// Adding the user to the group again without a ttl, or removing it, ends
// the expiry; adding it again with a ttl replaces it.

// More command types (see commands.go; append only).
const (
	CmdUserGroupTTL CommandType = 13 // add a user to a group for a time
	CmdTick         CommandType = 14 // nothing: its entry's stamp expires what is due
)

// MaxGroupTTL bounds a ttl in seconds (an int32, as in Azure's API).
const MaxGroupTTL = math.MaxInt32

// UserGroupTTL adds a user to a group for TTL seconds. A TTL of 0 adds
// instead the user's connections that are open at that log position, as
// connection members (Azure's ttl=0).
type UserGroupTTL struct {
	Hub, Group, User string
	TTL              uint64
}

// The buckets of user-to-group expiries:
//
//	groupTTL    expiry (u64) groupKey(hub, group, user) → empty (expiry order)
//	groupTTLOf  groupKey(hub, group, user)               → expiry (u64)
var (
	bucketGroupTTL   = []byte("groupTTL")
	bucketGroupTTLOf = []byte("groupTTLOf")
)

// EncodeUserGroupTTL encodes a user-to-group add with a ttl.
func EncodeUserGroupTTL(m *UserGroupTTL) Command {
	e := encoder{}
	e.byte(byte(CmdUserGroupTTL))
	e.string(m.Hub)
	e.string(m.Group)
	e.string(m.User)
	e.uvarint(m.TTL)
	return e.buf
}

// EncodeTick encodes a tick.
func EncodeTick() Command { return Command{byte(CmdTick)} }

// tick is a decoded CmdTick.
type tick struct{}

func parseUserGroupTTL(payload []byte) (*UserGroupTTL, error) {
	d := decoder{buf: payload}
	m := &UserGroupTTL{Hub: d.string(), Group: d.string(), User: d.string(), TTL: d.uvarint()}
	if err := d.done("user group ttl"); err != nil {
		return nil, err
	}
	return m, ValidateUserGroupTTL(m)
}

// ValidateUserGroupTTL checks a user-to-group add with a ttl.
func ValidateUserGroupTTL(m *UserGroupTTL) error {
	if err := ValidateMembership(&Membership{Hub: m.Hub, Group: m.Group, Kind: MemberUser, Member: m.User}, false); err != nil {
		return err
	}
	if m.TTL > MaxGroupTTL {
		return fmt.Errorf("%w: ttl must be at most %d seconds", ErrInvalidCommand, MaxGroupTTL)
	}
	return nil
}

func parseTick(payload []byte) (*tick, error) {
	if len(payload) != 0 {
		return nil, fmt.Errorf("%w: a tick carries nothing", ErrCorrupt)
	}
	return &tick{}, nil
}

// userGroupTTL applies a user-to-group add with a ttl; parseCommand
// validated m.
func (ap *applyState) userGroupTTL(ts int64, m *UserGroupTTL) (Result, error) {
	if m.TTL == 0 {
		conns, err := ap.userConnections(m.Hub, m.User)
		if err != nil {
			return Result{}, err
		}
		for _, c := range conns {
			if _, err := ap.membership(&Membership{Hub: m.Hub, Group: m.Group, Kind: MemberConnection, Member: c.id}, true); err != nil {
				return Result{}, err
			}
		}
		return Result{}, nil
	}
	// The add ends a previous expiry; then the new one is recorded.
	if _, err := ap.membership(&Membership{Hub: m.Hub, Group: m.Group, Kind: MemberUser, Member: m.User}, true); err != nil {
		return Result{}, err
	}
	expiry := uint64(max(ts, 0)) + m.TTL*uint64(time.Second)
	key := groupKey(m.Hub, m.Group, MemberUser, m.User)
	if err := ap.tx.Bucket(bucketGroupTTL).Put(append(u64key(expiry), key...), nil); err != nil {
		return Result{}, err
	}
	return Result{}, ap.tx.Bucket(bucketGroupTTLOf).Put(key, u64key(expiry))
}

// forgetGroupTTL ends the expiry of a user's membership, if it has one:
// the membership was removed, or added again without a ttl.
func (ap *applyState) forgetGroupTTL(hub, group, user string) error {
	of := ap.tx.Bucket(bucketGroupTTLOf)
	key := groupKey(hub, group, MemberUser, user)
	v := of.Get(key)
	if v == nil {
		return nil
	}
	if len(v) != 8 {
		return fmt.Errorf("%w: group ttl record", ErrCorrupt)
	}
	if err := ap.tx.Bucket(bucketGroupTTL).Delete(append(append([]byte(nil), v...), key...)); err != nil {
		return err
	}
	return of.Delete(key)
}

// expireGroupTTLs removes the user memberships whose expiry is at or
// before now, the stamp of the entry about to be applied.
func (ap *applyState) expireGroupTTLs(now int64) error {
	if now < 0 {
		return nil
	}
	type due struct{ hub, group, user string }
	var expired []due
	c := ap.tx.Bucket(bucketGroupTTL).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			return fmt.Errorf("%w: group ttl key", ErrCorrupt)
		}
		if binary.BigEndian.Uint64(k[:8]) > uint64(now) {
			break
		}
		hub, group, user, err := splitUserGroupKey(k[8:])
		if err != nil {
			return err
		}
		expired = append(expired, due{hub, group, user})
	}
	for _, e := range expired {
		if err := ap.leave(e.hub, e.group, MemberUser, e.user); err != nil {
			return err
		}
	}
	return nil
}

// splitUserGroupKey reads a groupKey of a user member.
func splitUserGroupKey(k []byte) (hub, group, user string, err error) {
	hub, rest, ok1 := readLP(k)
	group, rest, ok2 := readLP(rest)
	if !ok1 || !ok2 || len(rest) < 1 || MemberKind(rest[0]) != MemberUser {
		return "", "", "", fmt.Errorf("%w: group ttl key", ErrCorrupt)
	}
	user, rest, ok := readLP(rest[1:])
	if !ok || len(rest) != 0 {
		return "", "", "", fmt.Errorf("%w: group ttl key", ErrCorrupt)
	}
	return hub, group, user, nil
}

// NextGroupExpiry returns the earliest expiry (Unix nanoseconds, on the
// proposers' clock) of a user-to-group membership; ok is false when none
// has a ttl.
func (f *FSM) NextGroupExpiry() (at int64, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketGroupTTL).Cursor().First()
		if k == nil {
			return nil
		}
		if len(k) < 8 {
			return fmt.Errorf("%w: group ttl key", ErrCorrupt)
		}
		at, ok = int64(min(binary.BigEndian.Uint64(k[:8]), math.MaxInt64)), true
		return nil
	})
	return at, ok, err
}

// UserGroupExpiry returns when a user's membership of a group expires
// (Unix nanoseconds); ok is false when it has no ttl.
func (f *FSM) UserGroupExpiry(hub, group, user string) (at int64, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGroupTTLOf).Get(groupKey(hub, group, MemberUser, user))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: group ttl record", ErrCorrupt)
		}
		at, ok = int64(min(binary.BigEndian.Uint64(v), math.MaxInt64)), true
		return nil
	})
	return at, ok, err
}

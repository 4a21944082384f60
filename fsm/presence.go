package fsm

import (
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// GroupConnection is an open connection in a group: a connection member,
// or a connection of a user member.
type GroupConnection struct {
	ConnID string
	UserID string // "" for an anonymous connection
}

// GroupConnections lists the open connections in a group of a hub, by
// connection id, after the connection id after ("" for the first page),
// at most limit of them; more is true when the group has more after the
// last one returned. A connection that is in the group both directly and
// through its user is listed once.
func (f *FSM) GroupConnections(hub, group, after string, limit int) (out []GroupConnection, more bool, err error) {
	if limit <= 0 {
		limit = 1
	}
	err = f.view(func(tx *bolt.Tx) error {
		ap := &applyState{tx: tx, groups: tx.Bucket(bucketGroups), conns: tx.Bucket(bucketConns), userConns: tx.Bucket(bucketUserConns)}
		conns, err := ap.groupConnections(hub, group)
		if err != nil {
			return err
		}
		slices.SortFunc(conns, func(a, b execConn) int { return strings.Compare(a.id, b.id) })
		conns = slices.CompactFunc(conns, func(a, b execConn) bool { return a.id == b.id })
		for _, c := range conns {
			if c.id <= after {
				continue
			}
			if len(out) == limit {
				more = true
				break
			}
			out = append(out, GroupConnection{ConnID: c.id, UserID: c.user})
		}
		return nil
	})
	return out, more, err
}

package fsm

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// view runs fn in a read transaction on the current store.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return fmt.Errorf("read state: store closed")
	}
	return f.db.View(fn)
}

func hasPrefix(b *bolt.Bucket, prefix []byte) bool {
	k, _ := b.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// anyKeyUnder reports whether the named bucket holds a key under prefix.
func (f *FSM) anyKeyUnder(bucket, prefix []byte) (bool, error) {
	var ok bool
	err := f.view(func(tx *bolt.Tx) error {
		ok = hasPrefix(tx.Bucket(bucket), prefix)
		return nil
	})
	return ok, err
}

// Nodes lists the advertised addresses of the cluster's members, as
// replicated through CmdNodeInfo.
func (f *FSM) Nodes() ([]NodeInfo, error) {
	var out []NodeInfo
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(_, v []byte) error {
			n, err := decodeNodeInfo(v)
			if err != nil {
				return err
			}
			out = append(out, *n)
			return nil
		})
	})
	return out, err
}

// Node returns one member's addresses; ok is false if it is unknown.
func (f *FSM) Node(id string) (n NodeInfo, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNodes).Get([]byte(id))
		if v == nil {
			return nil
		}
		info, err := decodeNodeInfo(v)
		if err != nil {
			return err
		}
		n, ok = *info, true
		return nil
	})
	return n, ok, err
}

// GroupHasMembers reports whether a group of the hub has any member.
func (f *FSM) GroupHasMembers(hub, group string) (bool, error) {
	return f.anyKeyUnder(bucketGroups, groupPrefix(hub, group))
}

// UserHasConnections reports whether a user has an open connection to the hub.
func (f *FSM) UserHasConnections(hub, user string) (bool, error) {
	return f.anyKeyUnder(bucketUserConns, userConnsPrefix(hub, user))
}

// ConnectionInfo describes an open connection.
type ConnectionInfo struct {
	Hub, ConnID, UserID, NodeID string
}

// Connection returns an open connection's record; ok is false if it is not
// open.
func (f *FSM) Connection(hub, conn string) (c ConnectionInfo, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketConns).Get(connKey(hub, conn))
		if v == nil {
			return nil
		}
		d := decoder{buf: v}
		c = ConnectionInfo{Hub: hub, ConnID: conn, UserID: d.string(), NodeID: d.string()}
		ok = true
		return d.done("connection record")
	})
	return c, ok, err
}

// IsMember reports whether a connection or user is in a group.
func (f *FSM) IsMember(hub, group string, kind MemberKind, member string) (bool, error) {
	var ok bool
	err := f.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketGroups).Get(groupKey(hub, group, kind, member)) != nil
		return nil
	})
	return ok, err
}

// GroupsOf lists the groups a connection or user belongs to in a hub.
func (f *FSM) GroupsOf(hub string, kind MemberKind, member string) ([]string, error) {
	var out []string
	err := f.view(func(tx *bolt.Tx) error {
		prefix := memberOfPrefix(hub, kind, member)
		c := tx.Bucket(bucketMemberOf).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			g, _, ok := readLP(k[len(prefix):])
			if !ok {
				return fmt.Errorf("%w: memberOf key", ErrCorrupt)
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// Stats is a summary of the store for status pages and metrics.
type Stats struct {
	AppliedIndex     uint64 `json:"applied_index"`
	FirstMessage     uint64 `json:"first_message"`
	LastMessage      uint64 `json:"last_message"`
	RetainedMessages uint64 `json:"retained_messages"`
	RetainedBytes    uint64 `json:"retained_bytes"`
	Connections      int    `json:"connections"`
	StoreFileBytes   int64  `json:"store_file_bytes"`
}

// Stats reads the store's counters.
func (f *FSM) Stats() (Stats, error) {
	var s Stats
	err := f.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.AppliedIndex = getU64(meta, metaAppliedIndex)
		s.FirstMessage = getU64(meta, metaFirstMessage)
		s.LastMessage = getU64(meta, metaLastMessage)
		if s.LastMessage >= s.FirstMessage {
			s.RetainedMessages = s.LastMessage - s.FirstMessage + 1
		}
		s.RetainedBytes = getU64(meta, metaBytes)
		s.Connections = tx.Bucket(bucketConns).Stats().KeyN
		s.StoreFileBytes = tx.Size()
		return nil
	})
	return s, err
}

// GroupMember is a member of a group: a connection or a user.
type GroupMember struct {
	Kind MemberKind
	Name string
}

// GroupMembers lists the connections and users in a group of a hub.
func (f *FSM) GroupMembers(hub, group string) ([]GroupMember, error) {
	var out []GroupMember
	err := f.view(func(tx *bolt.Tx) error {
		prefix := groupPrefix(hub, group)
		c := tx.Bucket(bucketGroups).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			rest := k[len(prefix):]
			if len(rest) < 1 {
				return fmt.Errorf("%w: group key", ErrCorrupt)
			}
			name, tail, ok := readLP(rest[1:])
			if !ok || len(tail) != 0 {
				return fmt.Errorf("%w: group key", ErrCorrupt)
			}
			out = append(out, GroupMember{Kind: MemberKind(rest[0]), Name: name})
		}
		return nil
	})
	return out, err
}

// ConnectionsOn lists the open connections recorded as held by a node.
func (f *FSM) ConnectionsOn(nodeID string) ([]ConnectionInfo, error) {
	var out []ConnectionInfo
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConns).ForEach(func(k, v []byte) error {
			hub, rest, ok := readLP(k)
			if !ok {
				return fmt.Errorf("%w: connection key", ErrCorrupt)
			}
			conn, _, ok := readLP(rest)
			if !ok {
				return fmt.Errorf("%w: connection key", ErrCorrupt)
			}
			d := decoder{buf: v}
			info := ConnectionInfo{Hub: hub, ConnID: conn, UserID: d.string(), NodeID: d.string()}
			if info.NodeID == nodeID {
				out = append(out, info)
			}
			return d.err
		})
	})
	return out, err
}

// Holders counts the open connections per holding node.
func (f *FSM) Holders() (map[string]int, error) {
	out := map[string]int{}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConns).ForEach(func(_, v []byte) error {
			d := decoder{buf: v}
			d.string() // user
			node := d.string()
			if d.err != nil {
				return fmt.Errorf("connection record: %w", d.err)
			}
			out[node]++
			return nil
		})
	})
	return out, err
}

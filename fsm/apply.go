package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// ApplyBatch implements raft.BatchingFSM: it applies a run of committed
// entries in one bbolt transaction. Each command entry's response is a
// []Result, one per command; other entries answer nil.
//
// Apply's contract: nothing that arrives in the log panics a replica. A
// command that cannot be decoded, is of an unknown type or is invalid is
// rejected in its Result and changes nothing; an entry that cannot be split
// into commands answers an error and changes nothing but the applied index.
// Every replica decides the same, so none diverges. Only a store failure
// panics: the store could no longer follow the log. Applying uses no clock,
// randomness or network: time comes from the entry's proposer stamp.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		panic("fsm: apply after close")
	}
	var ap *applyState
	err := f.db.Update(func(tx *bolt.Tx) error {
		ap = newApplyState(f, tx)
		for i, l := range logs {
			if l.Index <= ap.applied {
				continue // already in the store (replay after restore)
			}
			ap.applied = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			res, err := ap.applyEntry(l)
			if err != nil {
				return err
			}
			results[i] = res
		}
		return ap.saveMeta()
	})
	if err != nil {
		// The store can no longer follow the log; continuing would diverge.
		panic(fmt.Sprintf("fsm: apply entries %d..%d: %v", logs[0].Index, logs[len(logs)-1].Index, err))
	}
	// The tail first: a reader that sees the new last message, or wakes on
	// the broadcast below, finds it in the tail.
	f.tail.add(ap.added, ap.first)
	f.appliedIndex.Store(ap.applied)
	f.lastMessage.Store(ap.last)
	f.firstMessage.Store(ap.first)
	f.retainedSize.Store(ap.bytes)
	f.notify.broadcast()
	f.watchers.wake(ap.touched)
	if observe := f.cfg.ObserveApply; observe != nil {
		now := time.Now()
		for _, ts := range ap.stamps {
			observe(now.Sub(time.Unix(0, ts)))
		}
	}
	return results
}

// applyState carries the meta counters through one transaction.
type applyState struct {
	f       *FSM
	tx      *bolt.Tx
	applied uint64
	last    uint64    // last message index
	first   uint64    // first retained message index
	bytes   uint64    // retained record bytes
	entry   uint64    // Raft index of the entry being applied
	stamps  []int64   // proposer stamps of the applied entries, when observed
	added   []Message // the messages this batch added, for the tail
	// touched lists what this batch changed, whose waiters are woken (see
	// watchers); nil until the first.
	touched    map[Watch]struct{}
	messagesOf string // the hub whose MessagesOf was touched last
	off        uint32 // offset of the command being applied in its entry

	messages, streams, groups, memberOf, conns, userConns, nodes, idem, idemTime *bolt.Bucket
}

func newApplyState(f *FSM, tx *bolt.Tx) *applyState {
	meta := tx.Bucket(bucketMeta)
	ap := &applyState{
		f: f, tx: tx,
		applied:   getU64(meta, metaAppliedIndex),
		last:      getU64(meta, metaLastMessage),
		first:     getU64(meta, metaFirstMessage),
		bytes:     getU64(meta, metaBytes),
		messages:  tx.Bucket(bucketMessages),
		streams:   tx.Bucket(bucketStreams),
		groups:    tx.Bucket(bucketGroups),
		memberOf:  tx.Bucket(bucketMemberOf),
		conns:     tx.Bucket(bucketConns),
		userConns: tx.Bucket(bucketUserConns),
		nodes:     tx.Bucket(bucketNodes),
		idem:      tx.Bucket(bucketIdem),
		idemTime:  tx.Bucket(bucketIdemTime),
	}
	// Message keys only ever grow: fill each page before starting the
	// next, instead of splitting pages half full. The store needs about
	// half the pages for messages, and the newest page, which every
	// commit reads into memory and writes back, holds fewer records on
	// average.
	ap.messages.FillPercent = 1
	return ap
}

func (ap *applyState) saveMeta() error {
	meta := ap.tx.Bucket(bucketMeta)
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{metaAppliedIndex, ap.applied}, {metaLastMessage, ap.last}, {metaFirstMessage, ap.first}, {metaBytes, ap.bytes}} {
		if err := putU64(meta, kv.k, kv.v); err != nil {
			return fmt.Errorf("save meta %s: %w", kv.k, err)
		}
	}
	return nil
}

// applyEntry applies one command entry. It returns []Result, one per
// command, or, for an entry that cannot be split into commands, an error
// wrapping ErrInvalidCommand (the entry changes nothing but the applied
// index, on every replica). A returned error is a store failure.
func (ap *applyState) applyEntry(l *raft.Log) (any, error) {
	ts, cmds, err := DecodeEntry(l.Data)
	if err != nil {
		ap.f.log.Error("rejected an entry that cannot be decoded", "entry", l.Index, "err", err)
		return fmt.Errorf("%w: entry %d: %w", ErrInvalidCommand, l.Index, err), nil
	}
	results := make([]Result, len(cmds))
	ap.entry = l.Index
	if err := ap.expireGroupTTLs(ts); err != nil {
		return nil, fmt.Errorf("entry %d group ttl: %w", l.Index, err)
	}
	if ap.f.cfg.ObserveApply != nil {
		ap.stamps = append(ap.stamps, ts)
	}
	for i, c := range cmds {
		ap.off = uint32(i)
		res, err := ap.applyCommand(ts, c)
		if err != nil {
			return nil, fmt.Errorf("entry %d command %d (%s): %w", l.Index, i, c.Type(), err)
		}
		res.Entry = l.Index
		results[i] = res
	}
	if err := ap.enforceRetention(ts); err != nil {
		return nil, fmt.Errorf("entry %d retention: %w", l.Index, err)
	}
	return results, nil
}

// applyCommand applies one command. The returned error is a store failure;
// rejections, including commands that cannot be decoded or are of an
// unknown type, go in the Result, the same on every replica.
func (ap *applyState) applyCommand(ts int64, c Command) (Result, error) {
	parsed, err := parseCommand(c)
	if err != nil {
		return Result{Err: err}, nil
	}
	if res, refused := ap.gate(parsed); refused { // level.go
		return res, nil
	}
	res, err := ap.applyParsed(ts, c, parsed)
	if err == nil && res.Err == nil {
		ap.touchStreamsOf(parsed)
	}
	return res, err
}

// touch records that the batch changed what w watches. The primitives
// that change messages, memberships and connection records call it
// (publish, membership, leave, connOpen, connClose), whichever command
// (or a group's expiry) they serve.
func (ap *applyState) touch(w Watch) {
	if ap.touched == nil {
		ap.touched = make(map[Watch]struct{})
	}
	ap.touched[w] = struct{}{}
}

// touchStreamsOf records the connections whose stream an applied command
// changed without going through those primitives: an invocation's
// completion, a checkpoint.
func (ap *applyState) touchStreamsOf(parsed any) {
	switch cmd := parsed.(type) {
	case *Invocation:
		ap.touch(ConnectionOf(cmd.Hub, cmd.ConnID))
	case *checkpointBatch:
		for _, cp := range cmd.cps {
			ap.touch(ConnectionOf(cp.hub, cp.conn))
		}
	}
}

// applyParsed applies a parsed command that passed the feature gate.
func (ap *applyState) applyParsed(ts int64, c Command, parsed any) (Result, error) {
	switch cmd := parsed.(type) {
	case *clusterLevel:
		return ap.raiseLevel(cmd)
	case *Publish:
		cmd.Arguments = append([]byte(nil), cmd.Arguments...) // it outlives the entry, in the tail
		return ap.publish(ts, c, cmd)
	case *Membership:
		return ap.membership(cmd, c.Type()&^IgnoreUnknownFlag == CmdGroupAdd)
	case *Connection:
		if c.Type()&^IgnoreUnknownFlag == CmdConnOpen {
			return ap.connOpen(cmd)
		}
		return ap.connClose(cmd)
	case *StatefulOpen:
		cmd.TokenHash = append([]byte(nil), cmd.TokenHash...)
		return ap.statefulOpen(cmd)
	case *Invocation:
		cmd.Value = append([]byte(nil), cmd.Value...)
		return ap.invocation(ts, cmd)
	case *checkpointBatch:
		return ap.checkpoints(cmd)
	case *parsedExecute:
		return ap.execute(ts, cmd)
	case *UserGroupTTL:
		return ap.userGroupTTL(ts, cmd)
	case *tick:
		return Result{}, nil
	case *NodeInfo:
		return Result{}, ap.nodes.Put([]byte(cmd.ID), c[1:])
	case *nodeRemove:
		return Result{}, ap.nodes.Delete([]byte(cmd.id))
	}
	return Result{}, fmt.Errorf("parsed command of type %T has no apply", parsed)
}

// publish appends a message; parseCommand validated p.
func (ap *applyState) publish(ts int64, c Command, p *Publish) (Result, error) {
	if p.IdempotencyKey != "" {
		if v := ap.idem.Get([]byte(p.IdempotencyKey)); len(v) == 16 {
			seen := int64(binary.BigEndian.Uint64(v[8:]))
			if ts-seen < int64(ap.f.cfg.IdempotencyWindow) {
				return Result{Index: binary.BigEndian.Uint64(v[:8]), Duplicate: true}, nil
			}
		}
	}
	index := ap.last + 1
	rec := encodeRecord(ts, c)
	if err := ap.messages.Put(u64key(index), rec); err != nil {
		return Result{}, err
	}
	for _, prefix := range streamsOf(p) {
		if err := ap.streams.Put(streamEntryKey(prefix, index), nil); err != nil {
			return Result{}, err
		}
	}
	if p.IdempotencyKey != "" {
		if err := ap.rememberIdempotencyKey(p.IdempotencyKey, index, ts); err != nil {
			return Result{}, err
		}
	}
	ap.last = index
	if ap.first == 0 {
		ap.first = 1
	}
	if len(ap.added) == 2*tailMessages {
		// A huge batch (a replay): only the newest can end up in the tail.
		ap.added = append(ap.added[:0], ap.added[tailMessages:]...)
	}
	ap.added = append(ap.added, messageOf(index, ts, p))
	if p.Hub != ap.messagesOf { // a batch's messages are mostly of one hub: one Watch made
		ap.messagesOf = p.Hub
		ap.touch(MessagesOf(p.Hub))
	}
	ap.bytes += uint64(len(rec))
	return Result{Index: index}, nil
}

func (ap *applyState) rememberIdempotencyKey(key string, index uint64, ts int64) error {
	if old := ap.idem.Get([]byte(key)); len(old) == 16 {
		// An expired key that is reused: drop its old expiry record.
		if err := ap.idemTime.Delete(append(append([]byte(nil), old[8:]...), key...)); err != nil {
			return err
		}
	}
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, index)
	binary.BigEndian.PutUint64(v[8:], uint64(ts))
	if err := ap.idem.Put([]byte(key), v); err != nil {
		return err
	}
	return ap.idemTime.Put(append(u64key(uint64(ts)), key...), nil)
}

// membership adds or removes a group member; parseCommand validated m.
func (ap *applyState) membership(m *Membership, add bool) (Result, error) {
	if add {
		ap.touch(memberWatch(m.Hub, m.Kind, m.Member))
		if m.Kind == MemberUser {
			if err := ap.forgetGroupTTL(m.Hub, m.Group, m.Member); err != nil {
				return Result{}, err
			}
		}
		if err := ap.recordHistory(m.Hub, m.Group, m.Kind, m.Member, true); err != nil {
			return Result{}, err
		}
		if err := ap.groups.Put(groupKey(m.Hub, m.Group, m.Kind, m.Member), nil); err != nil {
			return Result{}, err
		}
		return Result{}, ap.memberOf.Put(memberOfKey(m.Hub, m.Kind, m.Member, m.Group), nil)
	}
	if m.Group != "" {
		return Result{}, ap.leave(m.Hub, m.Group, m.Kind, m.Member)
	}
	return Result{}, ap.leaveAll(m.Hub, m.Kind, m.Member)
}

func (ap *applyState) leave(hub, group string, kind MemberKind, member string) error {
	ap.touch(memberWatch(hub, kind, member)) // also when a group's time runs out, which no command names
	if kind == MemberUser {
		if err := ap.forgetGroupTTL(hub, group, member); err != nil {
			return err
		}
	}
	if err := ap.recordHistory(hub, group, kind, member, false); err != nil {
		return err
	}
	if err := ap.groups.Delete(groupKey(hub, group, kind, member)); err != nil {
		return err
	}
	return ap.memberOf.Delete(memberOfKey(hub, kind, member, group))
}

// leaveAll removes a member from every group of the hub.
func (ap *applyState) leaveAll(hub string, kind MemberKind, member string) error {
	prefix := memberOfPrefix(hub, kind, member)
	var groups []string
	c := ap.memberOf.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		g, rest, ok := readLP(k[len(prefix):])
		if !ok || len(rest) != 0 {
			return fmt.Errorf("%w: memberOf key", ErrCorrupt)
		}
		groups = append(groups, g)
	}
	for _, g := range groups {
		if err := ap.leave(hub, g, kind, member); err != nil {
			return err
		}
	}
	return nil
}

// connOpen records a connection; parseCommand validated c's names.
func (ap *applyState) connOpen(c *Connection) (Result, error) {
	ap.touch(ConnectionOf(c.Hub, c.ConnID))
	key := connKey(c.Hub, c.ConnID)
	if rec := ap.conns.Get(key); rec != nil {
		// Reopened (a resume on another node): drop a previous user's index.
		d := decoder{buf: rec}
		if user := d.string(); user != "" && user != c.UserID {
			if err := ap.userConns.Delete(appendLP(userConnsPrefix(c.Hub, user), c.ConnID)); err != nil {
				return Result{}, err
			}
		}
	}
	e := encoder{}
	e.string(c.UserID)
	e.string(c.NodeID)
	if err := ap.conns.Put(key, e.buf); err != nil {
		return Result{}, err
	}
	if c.UserID != "" {
		return Result{}, ap.userConns.Put(appendLP(userConnsPrefix(c.Hub, c.UserID), c.ConnID), nil)
	}
	return Result{}, nil
}

// connClose forgets a connection and its group memberships. Messages sent to
// it stay until retention trims them. A close that names a node applies only
// while that node holds the connection: a stateful connection may have
// resumed on another node before its old holder's close was committed.
func (ap *applyState) connClose(c *Connection) (Result, error) {
	ap.touch(ConnectionOf(c.Hub, c.ConnID))
	key := connKey(c.Hub, c.ConnID)
	if rec := ap.conns.Get(key); rec != nil {
		d := decoder{buf: rec}
		user := d.string()
		if holder := d.string(); c.NodeID != "" && holder != c.NodeID {
			return Result{Err: fmt.Errorf("%w: connection %q is held by node %q, not %q", ErrInvalidCommand, c.ConnID, holder, c.NodeID)}, nil
		}
		if user != "" {
			if err := ap.userConns.Delete(appendLP(userConnsPrefix(c.Hub, user), c.ConnID)); err != nil {
				return Result{}, err
			}
		}
	}
	if err := ap.conns.Delete(key); err != nil {
		return Result{}, err
	}
	if err := ap.leaveAll(c.Hub, MemberConnection, c.ConnID); err != nil {
		return Result{}, err
	}
	return Result{}, ap.forgetStateful(c.Hub, c.ConnID)
}

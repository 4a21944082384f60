package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// ErrStreamTrimmed: a stateful connection's stream can no longer be rebuilt
// from its acknowledged position, because retention trimmed messages after
// it. The connection cannot resume.
var ErrStreamTrimmed = errors.New("fsm: the connection's stream was trimmed by retention")

// StatefulConnection is what the replicated state records of a stateful
// connection: who holds it, the protocol its client speaks, the client's
// highest applied message and the last checkpoint; all a node needs to
// take it over.
type StatefulConnection struct {
	Hub, ConnID, UserID, NodeID string
	Protocol                    string // the hub protocol the client speaks
	// ClientSeq is the highest client message applied: resent messages up
	// to it are duplicates.
	ClientSeq uint64
	// AckSeq and AckPos are the last replicated checkpoint: the client had
	// the stream up to event AckSeq, at AckPos.
	AckSeq uint64
	AckPos Position
}

// ConnEvent is one event of a stateful connection's stream: a message
// addressed to it, or the completion of one of its invocations.
type ConnEvent struct {
	Pos Position
	// Skip marks no event: the stream's position moves past messages that
	// turned out not to be for this connection (it was excluded), so a
	// reader never stalls on them. It is not numbered.
	Skip         bool
	Message      *Message // nil for a completion
	InvocationID string
	HasResult    bool
	Result       uint64 // the message index of a send
	Error        string
	// AppValue: the completion carries an application's value (HasValue),
	// or the event is an item of the stream InvocationID (Item) or an
	// invocation of Target the server sends to the client (Call).
	AppValue
}

// StatefulByToken finds a stateful connection by the hash of its token.
func (f *FSM) StatefulByToken(tokenHash []byte) (s StatefulConnection, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		key := tx.Bucket(bucketTokens).Get(tokenHash)
		if key == nil {
			return nil
		}
		hub, rest, ok1 := readLP(key)
		conn, _, ok2 := readLP(rest)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: token index", ErrCorrupt)
		}
		s, ok, err = readStatefulConnection(tx, hub, conn)
		return err
	})
	return s, ok, err
}

func readStatefulConnection(tx *bolt.Tx, hub, conn string) (StatefulConnection, bool, error) {
	key := connKey(hub, conn)
	v := tx.Bucket(bucketStateful).Get(key)
	c := tx.Bucket(bucketConns).Get(key)
	if v == nil || c == nil {
		return StatefulConnection{}, false, nil
	}
	rec, err := decodeStatefulRecord(v)
	if err != nil {
		return StatefulConnection{}, false, err
	}
	d := decoder{buf: c}
	s := StatefulConnection{Hub: hub, ConnID: conn, UserID: d.string(), NodeID: d.string(), Protocol: rec.Protocol,
		ClientSeq: rec.ClientSeq, AckSeq: rec.AckSeq, AckPos: rec.AckPos}
	return s, true, d.done("connection record")
}

// ReadConnection returns at most limit events of a stateful connection's
// stream after a position, in order; open is false when the connection is
// no longer open. Group messages count for the connection when it (or its
// user) was in the group at the message's position.
func (f *FSM) ReadConnection(hub, conn string, after Position, limit int) (events []ConnEvent, open bool, err error) {
	if limit <= 0 {
		limit = 1
	}
	err = f.view(func(tx *bolt.Tx) error {
		key := connKey(hub, conn)
		v := tx.Bucket(bucketStateful).Get(key)
		c := tx.Bucket(bucketConns).Get(key)
		if v == nil || c == nil {
			return nil
		}
		open = true
		rec, err := decodeStatefulRecord(v)
		if err != nil {
			return err
		}
		d := decoder{buf: c}
		user := d.string()
		msgs, err := connMessages(tx, hub, conn, user, rec.OpenPos, after, limit)
		if err != nil {
			return err
		}
		comps, err := connCompletions(tx, key, after, limit)
		if err != nil {
			return err
		}
		events = append(msgs, comps...)
		slices.SortFunc(events, func(a, b ConnEvent) int { return bytes.Compare(a.Pos.key(), b.Pos.key()) })
		if len(events) > limit {
			events = events[:limit]
		}
		return nil
	})
	return events, open, err
}

// interval is a span (from, to] of message indexes of a group stream.
type interval struct {
	prefix   []byte
	from, to uint64
}

func connMessages(tx *bolt.Tx, hub, conn, user string, openPos uint64, after Position, limit int) ([]ConnEvent, error) {
	meta := tx.Bucket(bucketMeta)
	first, last := getU64(meta, metaFirstMessage), getU64(meta, metaLastMessage)
	minMsg := after.Msg + 1
	if after.Order < orderMessage {
		minMsg = after.Msg
	}
	minMsg = max(minMsg, openPos+1)
	if minMsg > last {
		return nil, nil
	}
	if minMsg < first {
		return nil, fmt.Errorf("%w: resume needs message %d, the oldest retained is %d", ErrStreamTrimmed, minMsg, first)
	}
	spans := []interval{
		{prefix: streamPrefix(hub, streamAll, ""), from: minMsg - 1, to: last},
		{prefix: streamPrefix(hub, streamConnection, conn), from: minMsg - 1, to: last},
	}
	if user != "" {
		spans = append(spans, interval{prefix: streamPrefix(hub, streamUser, user), from: minMsg - 1, to: last})
	}
	hist := tx.Bucket(bucketHistory)
	members := []struct {
		kind MemberKind
		name string
	}{{MemberConnection, conn}}
	if user != "" {
		members = append(members, struct {
			kind MemberKind
			name string
		}{MemberUser, user})
	}
	for _, m := range members {
		prefix := memberOfPrefix(hub, m.kind, m.name)
		cur := hist.Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			group, rest, ok := readLP(k[len(prefix):])
			if !ok || len(rest) != 8 || len(v) != 8 {
				return nil, fmt.Errorf("%w: history key", ErrCorrupt)
			}
			from, to := binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(v)
			from, to = max(from, minMsg-1), min(to, last)
			if from < to {
				spans = append(spans, interval{prefix: streamPrefix(hub, streamGroup, group), from: from, to: to})
			}
		}
	}
	var indexes []uint64
	streams := tx.Bucket(bucketStreams).Cursor()
	for _, sp := range spans {
		n := 0
		for k, _ := streams.Seek(streamEntryKey(sp.prefix, sp.from+1)); k != nil && n < limit; k, _ = streams.Next() {
			if len(k) != len(sp.prefix)+8 || !bytes.HasPrefix(k, sp.prefix) {
				break
			}
			idx := binary.BigEndian.Uint64(k[len(sp.prefix):])
			if idx > sp.to {
				break
			}
			indexes = append(indexes, idx)
			n++
		}
	}
	slices.Sort(indexes)
	indexes = slices.Compact(indexes)
	if len(indexes) > limit {
		indexes = indexes[:limit]
	}
	msgs := tx.Bucket(bucketMessages)
	out := make([]ConnEvent, 0, len(indexes))
	for _, idx := range indexes {
		rec := msgs.Get(u64key(idx))
		if rec == nil {
			return nil, fmt.Errorf("%w: message %d", ErrStreamTrimmed, idx)
		}
		ts, p, err := decodeRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", idx, err)
		}
		if slices.Contains(p.Excluded, conn) {
			continue
		}
		m := messageOf(idx, ts, p)
		out = append(out, ConnEvent{Pos: Position{Msg: idx, Order: orderMessage}, Message: &m})
	}
	if len(out) == 0 && len(indexes) > 0 {
		// Every candidate excluded this connection: say how far it read.
		out = append(out, ConnEvent{Pos: Position{Msg: indexes[len(indexes)-1], Order: orderMessage}, Skip: true})
	}
	return out, nil
}

func connCompletions(tx *bolt.Tx, key []byte, after Position, limit int) ([]ConnEvent, error) {
	var out []ConnEvent
	from := append(append([]byte(nil), key...), after.key()...)
	c := tx.Bucket(bucketCompletions).Cursor()
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, key) && len(out) < limit; k, v = c.Next() {
		if bytes.Equal(k, from) {
			continue
		}
		pos := k[len(key):]
		if len(pos) != posSize {
			return nil, fmt.Errorf("%w: completion key", ErrCorrupt)
		}
		rec, err := decodeCompletion(v)
		if err != nil {
			return nil, err
		}
		out = append(out, ConnEvent{Pos: positionFromKey(pos), InvocationID: rec.InvocationID,
			HasResult: rec.HasResult, Result: rec.Result, Error: rec.Error, AppValue: rec.AppValue})
	}
	return out, nil
}

package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// enforceRetention trims the oldest messages, and their stream index
// entries, until the history fits every configured bound, and forgets
// expired idempotency keys. It runs after each applied command entry, with
// that entry's proposer stamp as "now", so every replica trims the same
// messages at the same log position.
func (st *applyState) enforceRetention(now int64) error {
	r := st.f.cfg.Retention
	for st.first != 0 && st.first <= st.last {
		count := st.last - st.first + 1
		over := (r.MaxMessages > 0 && count > r.MaxMessages) || (r.MaxBytes > 0 && st.bytes > r.MaxBytes)
		if !over && r.MaxAge <= 0 {
			break
		}
		rec := st.messages.Get(u64key(st.first))
		if rec == nil {
			return fmt.Errorf("%w: retained message %d is missing", ErrCorrupt, st.first)
		}
		if !over {
			ts, n := binary.Varint(rec)
			over = n > 0 && now-ts > int64(r.MaxAge)
		}
		if !over {
			break
		}
		_, p, err := decodeRecord(rec)
		if err != nil {
			return fmt.Errorf("message %d: %w", st.first, err)
		}
		for _, prefix := range streamsOf(p) {
			if err := st.streams.Delete(streamEntryKey(prefix, st.first)); err != nil {
				return err
			}
		}
		if err := st.messages.Delete(u64key(st.first)); err != nil {
			return err
		}
		st.bytes -= uint64(len(rec))
		st.first++
	}
	return st.expireIdempotencyKeys(now)
}

func (st *applyState) expireIdempotencyKeys(now int64) error {
	cutoff := now - int64(st.f.cfg.IdempotencyWindow)
	var expired [][]byte
	c := st.idemTime.Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8; k, _ = c.Next() {
		if int64(binary.BigEndian.Uint64(k[:8])) >= cutoff {
			break
		}
		expired = append(expired, append([]byte(nil), k...))
	}
	for _, k := range expired {
		key := k[8:]
		if v := st.idem.Get(key); len(v) == 16 && bytes.Equal(v[8:], k[:8]) {
			if err := st.idem.Delete(key); err != nil {
				return err
			}
		}
		if err := st.idemTime.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// historyHorizon is the last message index that no stateful connection
// will read again for a member's group history: a closed interval (from,
// to] with to <= horizon is dead. A stateful connection reads its stream
// after its open position, and never from before the oldest retained
// message (a resume that would need one fails with ErrStreamTrimmed). A
// connection's intervals are read only by itself; a user's only by that
// user's stateful connections in the hub, so a user that has none (one
// opened later starts after every closed interval) has no live closed
// interval at all. Like retention, this depends only on replicated state
// (message indexes and connection records), never on a clock.
func (st *applyState) historyHorizon(hub string, kind MemberKind, member string) (uint64, error) {
	var retained uint64 // everything up to it is trimmed
	if st.first > 0 {
		retained = st.first - 1
	}
	if kind == MemberConnection {
		rec, err := st.statefulRecord(hub, member)
		if err != nil || rec == nil {
			return math.MaxUint64, err
		}
		return max(retained, rec.OpenPos), nil
	}
	oldest := uint64(math.MaxUint64) // the earliest open position of the user's stateful connections
	prefix := userConnsPrefix(hub, member)
	c := st.userConns.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		conn, rest, ok := readLP(k[len(prefix):])
		if !ok || len(rest) != 0 {
			return 0, fmt.Errorf("%w: userConns key", ErrCorrupt)
		}
		rec, err := st.statefulRecord(hub, conn)
		if err != nil {
			return 0, err
		}
		if rec != nil {
			oldest = min(oldest, rec.OpenPos)
		}
	}
	if oldest == math.MaxUint64 {
		return oldest, nil
	}
	return max(retained, oldest), nil
}

// statefulRecord reads a stateful connection's record; nil if there is
// none.
func (st *applyState) statefulRecord(hub, conn string) (*statefulRecord, error) {
	v := st.statefulBucket().Get(connKey(hub, conn))
	if v == nil {
		return nil, nil
	}
	return decodeStatefulRecord(v)
}

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
func (ap *applyState) enforceRetention(now int64) error {
	r := ap.f.cfg.Retention
	for ap.first != 0 && ap.first <= ap.last {
		count := ap.last - ap.first + 1
		over := (r.MaxMessages > 0 && count > r.MaxMessages) || (r.MaxBytes > 0 && ap.bytes > r.MaxBytes)
		if !over && r.MaxAge <= 0 {
			break
		}
		rec := ap.messages.Get(u64key(ap.first))
		if rec == nil {
			return fmt.Errorf("%w: retained message %d is missing", ErrCorrupt, ap.first)
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
			return fmt.Errorf("message %d: %w", ap.first, err)
		}
		for _, prefix := range streamsOf(p) {
			if err := ap.streams.Delete(streamEntryKey(prefix, ap.first)); err != nil {
				return err
			}
		}
		if err := ap.messages.Delete(u64key(ap.first)); err != nil {
			return err
		}
		ap.bytes -= uint64(len(rec))
		ap.first++
	}
	return ap.expireIdempotencyKeys(now)
}

func (ap *applyState) expireIdempotencyKeys(now int64) error {
	cutoff := now - int64(ap.f.cfg.IdempotencyWindow)
	var expired [][]byte
	c := ap.idemTime.Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8; k, _ = c.Next() {
		if int64(binary.BigEndian.Uint64(k[:8])) >= cutoff {
			break
		}
		expired = append(expired, append([]byte(nil), k...))
	}
	for _, k := range expired {
		key := k[8:]
		if v := ap.idem.Get(key); len(v) == 16 && bytes.Equal(v[8:], k[:8]) {
			if err := ap.idem.Delete(key); err != nil {
				return err
			}
		}
		if err := ap.idemTime.Delete(k); err != nil {
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
func (ap *applyState) historyHorizon(hub string, kind MemberKind, member string) (uint64, error) {
	var retained uint64 // everything up to it is trimmed
	if ap.first > 0 {
		retained = ap.first - 1
	}
	if kind == MemberConnection {
		rec, err := ap.statefulRecord(hub, member)
		if err != nil || rec == nil {
			return math.MaxUint64, err
		}
		return max(retained, rec.OpenPos), nil
	}
	oldest := uint64(math.MaxUint64) // the earliest open position of the user's stateful connections
	err := eachNameUnder(ap.userConns, userConnsPrefix(hub, member), "userConns key", func(conn string, _ []byte) error {
		rec, err := ap.statefulRecord(hub, conn)
		if err != nil {
			return err
		}
		if rec != nil {
			oldest = min(oldest, rec.OpenPos)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if oldest == math.MaxUint64 {
		return oldest, nil
	}
	return max(retained, oldest), nil
}

// statefulRecord reads a stateful connection's record; nil if there is
// none.
func (ap *applyState) statefulRecord(hub, conn string) (*statefulRecord, error) {
	v := ap.statefulBucket().Get(connKey(hub, conn))
	if v == nil {
		return nil, nil
	}
	return decodeStatefulRecord(v)
}

package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

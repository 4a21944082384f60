package fsm

import (
	"encoding/binary"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Test-only views of the store, for invariants that no public method shows:
// stream index entries of trimmed messages, record sizes, and idempotency
// keys. The tests in package fsm_test use them through these functions.

// StreamIndexes lists the message index of every stream index entry, in key
// order.
func StreamIndexes(f *FSM) ([]uint64, error) {
	var out []uint64
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStreams).ForEach(func(k, _ []byte) error {
			out = append(out, binary.BigEndian.Uint64(k[len(k)-8:]))
			return nil
		})
	})
	return out, err
}

// StoredMessages counts the stored message records and their total size.
func StoredMessages(f *FSM) (n, size uint64, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(_, v []byte) error {
			n++
			size += uint64(len(v))
			return nil
		})
	})
	return n, size, err
}

// IdempotencyKeys lists the remembered idempotency keys and counts their
// expiry records.
func IdempotencyKeys(f *FSM) (keys []string, expiry int, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		expiry = tx.Bucket(bucketIdemTime).Stats().KeyN
		return tx.Bucket(bucketIdem).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	return keys, expiry, err
}

// SetStoreSync turns fsync of the store on or off, for the benchmark that
// measures what not syncing it saves.
func SetStoreSync(f *FSM, sync bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.db.NoSync = !sync
}

// ReadStore and ReadAllStore read the store, bypassing the in-memory tail,
// so tests can check that both give the same pages.
func ReadStore(f *FSM, r *Filter, after uint64, limit int) (Page, error) {
	return f.readStore(r, after, limit)
}

func ReadAllStore(f *FSM, after uint64, limit int) (Page, error) {
	return f.readAllStore(after, max(limit, 1))
}

// TailBounds are the tail's oldest and newest message indexes (0, 0 when
// empty).
func TailBounds(f *FSM) (lo, hi uint64) {
	f.tail.mu.RLock()
	defer f.tail.mu.RUnlock()
	if len(f.tail.msgs) == 0 {
		return 0, 0
	}
	return f.tail.msgs[0].Index, f.tail.msgs[len(f.tail.msgs)-1].Index
}

// DumpStore lists every key and value of every bucket, in order, so tests
// can check that two replicas hold byte-for-byte the same state.
func DumpStore(f *FSM) ([][2][]byte, error) {
	var out [][2][]byte
	err := f.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				key := append(append(append([]byte(nil), name...), 0), k...)
				out = append(out, [2][]byte{key, append([]byte(nil), v...)})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// HistoryIntervals counts the membership intervals in the history bucket,
// and how many of them are closed.
func HistoryIntervals(f *FSM) (n, closed int, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(_, v []byte) error {
			n++
			if binary.BigEndian.Uint64(v) != math.MaxUint64 {
				closed++
			}
			return nil
		})
	})
	return n, closed, err
}

package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// snapshotMagic starts every snapshot; its last byte is the format version.
var snapshotMagic = []byte("BPSNAP\x00\x01")

// Snapshot implements raft.FSM. It opens a read transaction, a consistent
// view of the store that later applies do not disturb; Persist streams it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, errors.New("snapshot: store closed")
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot: begin read: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

type snapshot struct{ tx *bolt.Tx }

// Persist writes the header and the store's pages to the sink, streaming:
// the store is never held in memory.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	_, err := w.Write(snapshotMagic)
	if err == nil {
		_, err = s.tx.WriteTo(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

// Release ends the read transaction.
func (s *snapshot) Release() { _ = s.tx.Rollback() }

// Restore implements raft.FSM: it writes the snapshot into a fresh file,
// syncs and checks it, then swaps it in under the state lock and removes
// the old store. Live state is never modified in place.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeRestoreFile(tmp, rc); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := checkRestoreFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	db, err := openStore(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: check snapshot store: %w", err)
	}
	_ = db.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	f.tail.reset() // its messages belong to the store being replaced
	// The old store is closed only after the swap, and not waited for: an
	// FSM snapshot (or a backup) may still hold a read transaction on it,
	// and Raft's snapshot goroutine that holds it can be waiting for the
	// very apply loop that is running this restore — closing first, under
	// the lock, deadlocked a follower installing a snapshot (found by the
	// chaos suite's kill loop). The rename leaves the old file's inode to
	// its open handle; the close completes once its last transaction ends.
	old := f.db
	f.db = nil
	if err := os.Rename(tmp, f.path); err != nil {
		f.db = old
		return fmt.Errorf("restore: swap store: %w", err)
	}
	db, err = openStore(f.path)
	if err != nil {
		return fmt.Errorf("restore: reopen store: %w", err)
	}
	f.db = db
	if old != nil {
		go func() {
			if err := old.Close(); err != nil {
				f.log.Warn("close the store replaced by a snapshot", "err", err)
			}
		}()
	}
	if err := f.loadCounters(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.log.Info("restored state from snapshot", "applied_index", f.AppliedIndex(),
		"first_message", f.FirstMessage(), "last_message", f.LastMessage())
	f.notify.broadcast()
	f.watchers.wakeAll()
	return nil
}

func writeRestoreFile(path string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("restore: read snapshot header: %w", err)
	}
	if !bytes.Equal(head, snapshotMagic) {
		return fmt.Errorf("restore: %w: not a Backplane snapshot (or an unsupported version)", ErrCorrupt)
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restore: create %s: %w", path, err)
	}
	if _, err := io.Copy(out, br); err != nil {
		_ = out.Close()
		return fmt.Errorf("restore: write %s: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return fmt.Errorf("restore: sync %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("restore: close %s: %w", path, err)
	}
	return nil
}

// checkRestoreFile rejects a file that is not a whole store before it is
// opened for writing: bbolt would initialise an empty file as a new, empty
// store, and reading the pages of a truncated one faults and kills the
// process. Opened read-only, bbolt reads only the meta pages.
func checkRestoreFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if info.Size() == 0 {
		return fmt.Errorf("restore: %w: snapshot has no store", ErrCorrupt)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("restore: %w: %w", ErrCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return fmt.Errorf("restore: %w: snapshot store truncated to %d of %d bytes", ErrCorrupt, info.Size(), tx.Size())
		}
		return nil
	})
}

package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// BackupInfo describes a backup: the state as of a Raft index.
type BackupInfo struct {
	// AppliedIndex is the last Raft index the backed-up state includes.
	AppliedIndex uint64 `json:"applied_index"`
	// LastMessage is the highest message index in it.
	LastMessage uint64 `json:"last_message"`
	// FirstMessage is the oldest message index it retains.
	FirstMessage uint64 `json:"first_message"`
}

// Backup is a consistent view of the store, in the snapshot format, that
// later applies do not disturb. Release it when done.
type Backup struct {
	Info BackupInfo
	snap *snapshot
}

// Backup opens a consistent view of the store for a backup.
func (f *FSM) Backup() (*Backup, error) {
	s, err := f.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	snap := s.(*snapshot)
	meta := snap.tx.Bucket(bucketMeta)
	info := BackupInfo{
		AppliedIndex: getU64(meta, metaAppliedIndex),
		LastMessage:  getU64(meta, metaLastMessage),
		FirstMessage: getU64(meta, metaFirstMessage),
	}
	return &Backup{Info: info, snap: snap}, nil
}

// WriteTo streams the backup to w: the snapshot header and the store's
// pages.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	n, err := bw.Write(snapshotMagic)
	written := int64(n)
	if err == nil {
		var m int64
		m, err = b.snap.tx.WriteTo(bw)
		written += m
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return written, fmt.Errorf("backup: write: %w", err)
	}
	return written, nil
}

// Release ends the backup's read transaction.
func (b *Backup) Release() { b.snap.Release() }

// CheckBackup restores the backup at path into a scratch store under
// scratchDir, which it removes afterwards, and returns what it holds: a
// damaged or foreign file is an error here, before anything is seeded
// from it.
func CheckBackup(path, scratchDir string) (BackupInfo, error) {
	file, err := os.Open(path)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("check backup: %w", err)
	}
	dir, err := os.MkdirTemp(scratchDir, "backup-check-")
	if err != nil {
		_ = file.Close()
		return BackupInfo{}, fmt.Errorf("check backup: %w", err)
	}
	defer os.RemoveAll(dir)
	f, err := New(Config{Dir: dir})
	if err != nil {
		_ = file.Close()
		return BackupInfo{}, fmt.Errorf("check backup: %w", err)
	}
	defer f.Close()
	if err := f.Restore(file); err != nil { // Restore closes file
		return BackupInfo{}, fmt.Errorf("check backup %s: %w", path, err)
	}
	info := BackupInfo{AppliedIndex: f.AppliedIndex(), LastMessage: f.LastMessage(), FirstMessage: f.FirstMessage()}
	if info.AppliedIndex == 0 {
		return info, errors.New("check backup: it holds no applied entry")
	}
	return info, nil
}

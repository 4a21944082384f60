package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A member must never start with less than it had: a Raft member that lost
// entries it acknowledged, or the term and vote it gave, can vote a stale
// candidate in, and the cluster then overwrites acknowledged entries. So
// Open checks the files first and refuses, with ErrDamaged and a clear
// word, a log store that is empty, missing or damaged, a lost term, and a
// newest snapshot that does not read back. The recovery is always the same:
// wipe the member's data directory and join it again as a new member
// (docs/operations.md, "Damaged or lost files"); the others hold the log.

// ErrDamaged: the member's Raft files are damaged or lost; it must not
// start from them.
var ErrDamaged = errors.New("raft files damaged or lost")

// memberFile records which member a Raft directory belongs to. It is
// written once the member has started, so a later start can tell a lost
// log store from a new member.
const memberFile = "member"

// recovery is the advice every ErrDamaged error ends with.
const recovery = "this member cannot start from it without risking acknowledged messages; wipe its data directory and join it to the cluster again as a new member (docs/operations.md, \"Damaged or lost files\")"

func damaged(format string, args ...any) error {
	return fmt.Errorf("raftlog: %w: %s; %s", ErrDamaged, fmt.Sprintf(format, args...), recovery)
}

// checkFiles runs before the stores are opened.
func checkFiles(dir, id string) error {
	dbPath := filepath.Join(dir, "raft.db")
	marker, err := os.ReadFile(filepath.Join(dir, memberFile))
	hasMarker := err == nil
	if hasMarker {
		if owner := strings.TrimSpace(string(marker)); owner != id {
			return fmt.Errorf("raftlog: %s belongs to member %q, not %q: start it with -id %s, or use another data directory", dir, owner, id, owner)
		}
	}
	snapshots, err := snapshotsIn(dir)
	if err != nil {
		return err
	}
	st, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if hasMarker || len(snapshots) > 0 {
			return damaged("the log store %s is missing, though this member has run before", dbPath)
		}
		return nil
	case err != nil:
		return fmt.Errorf("raftlog: log store: %w", err)
	case st.Size() == 0:
		return damaged("the log store %s is empty (0 bytes): it was truncated or lost", dbPath)
	}
	if err := checkBolt(dbPath); err != nil {
		return damaged("the log store %s is damaged: %v", dbPath, err)
	}
	if len(snapshots) > 0 {
		if err := checkSnapshot(dir, snapshots[0]); err != nil {
			return damaged("the newest snapshot %s is damaged: %v", snapshots[0].ID, err)
		}
	}
	return nil
}

// checkState runs once the stores are open: a member with a log or
// snapshots has a current term; one without has lost it.
func checkState(dir string, stable raft.StableStore, logs raft.LogStore) error {
	term, err := stable.GetUint64([]byte("CurrentTerm"))
	if err != nil && err.Error() != "not found" {
		return damaged("read the current term: %v", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return damaged("read the log's last index: %v", err)
	}
	snapshots, err := snapshotsIn(dir)
	if err != nil {
		return err
	}
	if term == 0 && (last > 0 || len(snapshots) > 0) {
		return damaged("the log store %s has lost its current term (it holds %d entries and %d snapshots)", filepath.Join(dir, "raft.db"), last, len(snapshots))
	}
	return checkContinuity(dir, term, logs, snapshots)
}

// checkContinuity: Raft restores the newest snapshot and replays the log
// after it, so the log must go on from that snapshot without a gap. A log
// that starts later lost the entries between them, or lost the snapshot
// that held them (a deleted snapshots/ directory, or a deleted newest
// snapshot beside an older one); hashicorp/raft panics on such a log
// ("log not found"). And no term may exceed the current term: the current
// term is written before any entry of a newer term is stored, so a lower one
// means the stable store went back in time.
//
// A log that ends below the newest snapshot is not refused: a follower that
// received a snapshot from the leader keeps its older entries and has none
// after the snapshot until the next entry arrives, and everything it
// acknowledged is in the snapshot.
func checkContinuity(dir string, term uint64, logs raft.LogStore, snapshots []*raft.SnapshotMeta) error {
	dbPath := filepath.Join(dir, "raft.db")
	var snapIndex, snapTerm uint64
	snapDesc := "there is no snapshot"
	if len(snapshots) > 0 {
		snapIndex, snapTerm = snapshots[0].Index, snapshots[0].Term
		snapDesc = fmt.Sprintf("the newest snapshot (%s) ends at entry %d", filepath.Join(dir, "snapshots", snapshots[0].ID), snapIndex)
	}
	if snapTerm > term {
		return damaged("the log store %s has current term %d, below the term %d of the newest snapshot: it went back in time", dbPath, term, snapTerm)
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return damaged("read the first index of the log store %s: %v", dbPath, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return damaged("read the last index of the log store %s: %v", dbPath, err)
	}
	if last == 0 {
		return nil
	}
	if first > snapIndex+1 {
		return damaged("the log in %s starts at entry %d, but %s: entries %d to %d are lost", dbPath, first, snapDesc, snapIndex+1, first-1)
	}
	var entry raft.Log
	if err := logs.GetLog(last, &entry); err != nil {
		return damaged("read the last entry (%d) of the log store %s: %v", last, dbPath, err)
	}
	if entry.Term > term {
		return damaged("the log store %s has current term %d, below the term %d of its last entry: it went back in time", dbPath, term, entry.Term)
	}
	return nil
}

// snapshotsIn lists the snapshots in dir, newest first.
func snapshotsIn(dir string) ([]*raft.SnapshotMeta, error) {
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("raftlog: snapshot store: %w", err)
	}
	list, err := snaps.List()
	if err != nil {
		return nil, damaged("list the snapshots in %s: %v", dir, err)
	}
	return list, nil
}

// checkSnapshot reads a snapshot back; the file store checks its CRC.
func checkSnapshot(dir string, meta *raft.SnapshotMeta) error {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	_, rc, err := snaps.Open(meta.ID)
	if err != nil {
		return err
	}
	return rc.Close()
}

// checkBolt checks a bbolt file's header against its size: the two meta
// pages (magic, checksum) and the page count of the newest valid one. A
// file cut short fails here; opening it would make bbolt panic in a
// goroutine of its own (its freelist scan), where no recover reaches. Then
// it walks the tree as that scan does (boltcheck.go), so damage inside a
// file of the right size fails here too.
func checkBolt(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	first := make([]byte, boltMetaSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		return fmt.Errorf("read the first meta page: %w", err)
	}
	pageSize := int64(binary.LittleEndian.Uint32(first[boltPageHeader+8:]))
	if pageSize < 512 || pageSize > 1<<20 {
		return fmt.Errorf("not a bbolt file (page size %d)", pageSize)
	}
	var best *boltMeta
	for i := range int64(2) {
		buf := make([]byte, boltMetaSize)
		if _, err := f.ReadAt(buf, i*pageSize); err != nil {
			continue
		}
		if m, ok := parseBoltMeta(buf); ok && (best == nil || m.txid > best.txid) {
			best = &m
		}
	}
	if best == nil {
		return errors.New("neither meta page is valid")
	}
	if need := int64(best.pgid) * pageSize; st.Size() < need {
		return fmt.Errorf("the file is %d bytes, its meta page counts %d pages of %d bytes (%d bytes): it was cut short", st.Size(), best.pgid, pageSize, need)
	}
	return checkBoltTree(f, pageSize, *best)
}

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags (4 bytes each), the root bucket (16), the freelist page
// id, the page count and the transaction id (8 each) and an FNV-64a
// checksum of everything from the magic to the transaction id.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltMetaSize   = boltPageHeader + 4*4 + 16 + 8*4
)

type boltMeta struct{ root, freelist, pgid, txid uint64 }

func parseBoltMeta(page []byte) (boltMeta, bool) {
	meta := page[boltPageHeader:boltMetaSize]
	if binary.LittleEndian.Uint32(meta[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(meta[:len(meta)-8])
	if h.Sum64() != binary.LittleEndian.Uint64(meta[len(meta)-8:]) {
		return boltMeta{}, false
	}
	return boltMeta{
		root:     binary.LittleEndian.Uint64(meta[16:]),
		freelist: binary.LittleEndian.Uint64(meta[32:]),
		pgid:     binary.LittleEndian.Uint64(meta[40:]),
		txid:     binary.LittleEndian.Uint64(meta[48:]),
	}, true
}

// writeMember records that dir belongs to member id.
func writeMember(dir, id string) error {
	path := filepath.Join(dir, memberFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o640); err != nil {
		return fmt.Errorf("raftlog: record the member id: %w", err)
	}
	return nil
}

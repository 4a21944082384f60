package raftlog

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// HasState (asked before seeding a directory from a backup) says a
// directory where a member ran has state, and refuses an empty or damaged
// raft.db instead of opening it: seeding over a member that lost its log
// would start a second cluster.
func TestHasState(t *testing.T) {
	if has, err := HasState(t.TempDir()); err != nil || has {
		t.Fatalf("an empty directory: has %v, err %v; want no state", has, err)
	}
	dir := t.TempDir()
	stoppedMember(t, dir)
	if has, err := HasState(dir); err != nil || !has {
		t.Fatalf("a stopped member's directory: has %v, err %v; want state", has, err)
	}

	// Without the member record (a directory from before it existed), the
	// files themselves are checked.
	must(t, os.Remove(filepath.Join(dir, memberFile)))
	if has, err := HasState(dir); err != nil || !has {
		t.Fatalf("without the member record: has %v, err %v; want state", has, err)
	}
	db := filepath.Join(dir, "raft.db")
	st, err := os.Stat(db)
	must(t, err)
	must(t, os.Truncate(db, st.Size()/2))
	if _, err := HasState(dir); !errors.Is(err, ErrDamaged) {
		t.Fatalf("raft.db cut in half: %v, want ErrDamaged", err)
	}
	must(t, os.Truncate(db, 0))
	if _, err := HasState(dir); !errors.Is(err, ErrDamaged) {
		t.Fatalf("raft.db of 0 bytes: %v, want ErrDamaged", err)
	}
	if st, err := os.Stat(db); err != nil || st.Size() != 0 {
		t.Fatalf("HasState changed the empty raft.db: %v, %v", st, err)
	}
}

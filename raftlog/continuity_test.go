package raftlog

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/backplane/backplane/internal/testkit"
)

// openCompacting opens member id in dir with a short log tail, so a
// snapshot compacts the log.
func openCompacting(t *testing.T, id, dir, addr string, bootstrap bool) (*Raft, error) {
	t.Helper()
	return Open(Config{ID: id, Dir: dir, BindAddr: addr, Bootstrap: bootstrap, TrailingLogs: 5,
		FSM: &countFSM{applied: make(chan uint64, 4096)}})
}

// compactedMember runs a one-member cluster in dir: 300 entries, a
// snapshot, 300 more, a snapshot (the log now starts after the first one),
// three more entries, and a clean stop.
func compactedMember(t *testing.T, dir string) (addr string) {
	t.Helper()
	r, err := openCompacting(t, "a", dir, "127.0.0.1:0", true)
	must(t, err)
	waitLeader(t, r)
	apply := func(n int) {
		for i := range n {
			if _, _, err := r.Apply(t.Context(), fmt.Appendf(nil, "entry-%d", i)); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
	}
	for range 2 {
		apply(300)
		must(t, r.Snapshot())
	}
	apply(3)
	first, err := r.store.FirstIndex()
	must(t, err)
	if first <= 300 {
		t.Fatalf("the log starts at %d after two snapshots: the test needs it compacted past the first", first)
	}
	addr = r.LocalAddr()
	must(t, r.Shutdown())
	return addr
}

// snapshotDirs lists dir's snapshot directories, oldest first.
func snapshotDirs(t *testing.T, dir string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dir, "snapshots", "*"))
	must(t, err)
	sort.Strings(dirs) // named term-index-time
	if len(dirs) != 2 {
		t.Fatalf("snapshots %v, want 2", dirs)
	}
	return dirs
}

// A log that does not go on from the snapshot Raft would restore, and a
// current term below the terms on disk, are refused with ErrDamaged; each
// of the first two made hashicorp/raft panic in NewRaft ("log not found").
func TestLogThatDoesNotFollowItsSnapshotIsRefused(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"snapshots/ deleted", func(t *testing.T, dir string) {
			must(t, os.RemoveAll(filepath.Join(dir, "snapshots")))
		}, "there is no snapshot: entries 1 to "},
		{"the newest snapshot deleted", func(t *testing.T, dir string) {
			dirs := snapshotDirs(t, dir)
			must(t, os.RemoveAll(dirs[1]))
		}, "-302-"},
		{"the current term rolled back", func(t *testing.T, dir string) {
			s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
			must(t, err)
			term, err := s.GetUint64([]byte("CurrentTerm"))
			must(t, err)
			if term < 2 {
				t.Fatalf("current term %d: the test needs one above 1", term)
			}
			must(t, s.SetUint64([]byte("CurrentTerm"), 1))
			must(t, s.Close())
		}, "went back in time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := compactedMember(t, dir)
			tc.damage(t, dir)
			r, err := openCompacting(t, "a", dir, addr, true)
			wantDamaged(t, tc.name, r, err, tc.want)
			t.Logf("refused: %v", err)
		})
	}
}

// The legitimate cases still start: a member restarted after snapshots and
// compaction, and a follower that received the leader's snapshot and has
// no entry after it, so its log ends below its newest snapshot.
func TestLogEndingBelowAnInstalledSnapshotStarts(t *testing.T) {
	dirA := t.TempDir()
	addrA := compactedMember(t, dirA)
	a, err := openCompacting(t, "a", dirA, addrA, true)
	if err != nil {
		t.Fatalf("restart after snapshots and compaction: %v", err)
	}
	defer a.Shutdown()
	waitLeader(t, a)

	// c keeps a majority while b is down.
	c, err := openCompacting(t, "c", t.TempDir(), "127.0.0.1:0", false)
	must(t, err)
	defer c.Shutdown()
	dirB := t.TempDir()
	b, err := openCompacting(t, "b", dirB, "127.0.0.1:0", false)
	must(t, err)
	for _, r := range []*Raft{c, b} {
		if _, err := a.Join(r.ID(), r.LocalAddr()); err != nil {
			t.Fatalf("join %s: %v", r.ID(), err)
		}
	}
	waitApplied := func(r *Raft, want uint64) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("%s to apply %d", r.ID(), want), func() (bool, string) {
			st := r.Status()
			return st.AppliedIndex >= want, fmt.Sprintf("%+v", st)
		})
	}
	waitApplied(b, a.Status().CommitIndex)
	addrB := b.LocalAddr()
	must(t, b.Shutdown())

	// Without b, the leader moves on and compacts past b's log, then takes
	// a snapshot at its last entry: b gets that snapshot and nothing after.
	for i := range 300 {
		if _, _, err := a.Apply(t.Context(), fmt.Appendf(nil, "later-%d", i)); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	must(t, a.Snapshot())
	snapIndex := a.Status().LastIndex
	b, err = openCompacting(t, "b", dirB, addrB, false)
	if err != nil {
		t.Fatalf("restart b: %v", err)
	}
	waitApplied(b, snapIndex)
	last, err := b.store.LastIndex()
	must(t, err)
	if st := a.Status(); st.LastIndex != snapIndex || last >= snapIndex {
		t.Fatalf("b's log ends at %d, the leader's at %d, its snapshot at %d: the test needs b's log to end below the snapshot", last, st.LastIndex, snapIndex)
	}
	must(t, b.Shutdown())

	b, err = openCompacting(t, "b", dirB, addrB, false)
	if err != nil {
		t.Fatalf("restart of a follower whose log (to %d) ends below its installed snapshot (%d): %v", last, snapIndex, err)
	}
	defer b.Shutdown()
	waitApplied(b, snapIndex)
}

package raftlog

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// stoppedMember runs a one-member cluster in dir, applies entries, takes
// two snapshots (so there are two to damage) and stops it cleanly.
func stoppedMember(t *testing.T, dir string) (addr string) {
	t.Helper()
	a := open(t, "a", dir, true)
	waitLeader(t, a)
	for round := range 2 {
		for range 50 {
			if _, _, err := a.Apply(t.Context(), []byte("x")); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
		if err := a.Snapshot(); err != nil {
			t.Fatalf("snapshot %d: %v", round, err)
		}
	}
	addr = a.LocalAddr()
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func reopen(dir, addr string) (*Raft, error) {
	return Open(Config{ID: "a", Dir: dir, BindAddr: addr, Bootstrap: true, FSM: &countFSM{applied: make(chan uint64, 4096)}})
}

// Every way of losing or damaging a member's Raft files ends in ErrDamaged
// with a clear word and the recovery, never a panic and never a silent
// start with less than the member had.
func TestDamagedFilesAreRefused(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"raft.db truncated to 0 bytes", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(dir, "raft.db"), 0))
		}, "is empty (0 bytes)"},
		{"raft.db cut in half", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "raft.db")
			st, err := os.Stat(p)
			must(t, err)
			must(t, os.Truncate(p, st.Size()/2))
		}, "is damaged"},
		{"raft.db deleted", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "raft.db")))
		}, "is missing"},
		{"both snapshots corrupt", func(t *testing.T, dir string) {
			snaps, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
			must(t, err)
			if len(snaps) != 2 {
				t.Fatalf("%d snapshots, want 2", len(snaps))
			}
			for _, p := range snaps {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteAt([]byte("garbage!"), 8)
				must(t, err)
				must(t, f.Close())
			}
		}, "snapshot"},
		{"the current term lost", func(t *testing.T, dir string) {
			s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
			must(t, err)
			must(t, s.SetUint64([]byte("CurrentTerm"), 0))
			must(t, s.Close())
		}, "lost its current term"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := stoppedMember(t, dir)
			tc.damage(t, dir)
			r, err := reopen(dir, addr)
			wantDamaged(t, tc.name, r, err, tc.want)
		})
	}
}

// wantDamaged wants a member with what to have been refused: err is
// ErrDamaged saying want and how to recover. A member that started
// anyway (r) is shut down.
func wantDamaged(t *testing.T, what string, r *Raft, err error, want string) {
	t.Helper()
	if err == nil {
		_ = r.Shutdown()
		t.Fatalf("a member with %s started", what)
	}
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "join it to the cluster again") {
		t.Fatalf("error %q, want ErrDamaged saying %q and the recovery", err, want)
	}
}

// Starting another member's directory is refused; so is a Raft port in
// use (an error, where a nil pointer once panicked).
func TestWrongMemberAndBusyPort(t *testing.T) {
	dir := t.TempDir()
	addr := stoppedMember(t, dir)
	_, err := Open(Config{ID: "b", Dir: dir, BindAddr: addr, FSM: &countFSM{applied: make(chan uint64, 16)}})
	if err == nil || !strings.Contains(err.Error(), `belongs to member "a"`) {
		t.Fatalf("open a's directory as b: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	_, err = Open(Config{ID: "c", Dir: t.TempDir(), BindAddr: ln.Addr().String(), Bootstrap: true, FSM: &countFSM{applied: make(chan uint64, 16)}})
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("open on a busy port: %v", err)
	}
}

// The checks let the legitimate cases through: a restart after snapshots
// and compaction, and a member that was never added restarting.
func TestHealthyFilesStart(t *testing.T) {
	dir := t.TempDir()
	addr := stoppedMember(t, dir)
	r, err := reopen(dir, addr)
	if err != nil {
		t.Fatalf("restart after snapshots: %v", err)
	}
	waitLeader(t, r)
	must(t, r.Shutdown())

	waiting := t.TempDir()
	w, err := Open(Config{ID: "w", Dir: waiting, BindAddr: "127.0.0.1:0", FSM: &countFSM{applied: make(chan uint64, 16)}})
	must(t, err)
	wAddr := w.LocalAddr()
	must(t, w.Shutdown())
	w, err = Open(Config{ID: "w", Dir: waiting, BindAddr: wAddr, FSM: &countFSM{applied: make(chan uint64, 16)}})
	if err != nil {
		t.Fatalf("restart of a member that was never added: %v", err)
	}
	must(t, w.Shutdown())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

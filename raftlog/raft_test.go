package raftlog

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/internal/testkit"
)

// countFSM counts applied command entries.
type countFSM struct{ applied chan uint64 }

func (f *countFSM) Apply(l *raft.Log) interface{} {
	f.applied <- l.Index
	return l.Index
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return noSnapshot{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noSnapshot struct{}

func (noSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noSnapshot) Release()                             {}

func open(t *testing.T, id, dir string, bootstrap bool) *Raft {
	t.Helper()
	r, err := Open(Config{ID: id, Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: bootstrap,
		FSM: &countFSM{applied: make(chan uint64, 1024)}})
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	return r
}

func waitLeader(t *testing.T, r *Raft) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, r.ID()+" to become leader", func() (bool, string) {
		return r.IsLeader(), fmt.Sprintf("%+v", r.Status())
	})
}

func TestBootstrapRestartJoinAndConflicts(t *testing.T) {
	dir := t.TempDir()
	a := open(t, "a", dir, true)
	if a.Restarted() {
		t.Fatal("a fresh directory reported existing state")
	}
	waitLeader(t, a)
	idx, resp, err := a.Apply(t.Context(), []byte("x"))
	if err != nil || resp.(uint64) != idx {
		t.Fatalf("apply: index %d response %v err %v", idx, resp, err)
	}

	b := open(t, "b", t.TempDir(), false)
	defer b.Shutdown()
	if added, err := a.Join("b", b.LocalAddr()); err != nil || !added {
		t.Fatalf("join b: added=%v err=%v", added, err)
	}
	if added, err := a.Join("b", b.LocalAddr()); err != nil || added {
		t.Fatalf("join b again: added=%v err=%v, want a no-op", added, err)
	}
	if _, err := a.Join("b", "127.0.0.1:1"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same id, other address: %v, want ErrConflict", err)
	}
	if _, err := a.Join("c", b.LocalAddr()); !errors.Is(err, ErrConflict) {
		t.Fatalf("other id, same address: %v, want ErrConflict", err)
	}
	if _, err := b.Join("d", "127.0.0.1:2"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("join on a follower: %v, want ErrNotLeader", err)
	}
	if err := a.Remove("nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("remove unknown: %v, want ErrUnknownMember", err)
	}
	members, _ := a.Members()
	if len(members) != 2 {
		t.Fatalf("members %+v, want a and b", members)
	}
	if err := a.Remove("b"); err != nil {
		t.Fatalf("remove b: %v", err)
	}
	if members, _ := a.Members(); len(members) != 1 {
		t.Fatalf("after remove: %+v", members)
	}

	// A restart with the same directory finds its state and does not
	// bootstrap again (Bootstrap is ignored).
	addr := a.LocalAddr()
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	a2, err := Open(Config{ID: "a", Dir: dir, BindAddr: addr, Bootstrap: true, FSM: &countFSM{applied: make(chan uint64, 1024)}})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer a2.Shutdown()
	if !a2.Restarted() {
		t.Fatal("restart did not find the existing state")
	}
	waitLeader(t, a2)
	if st := a2.Status(); st.LastIndex < idx {
		t.Fatalf("after restart the log ends at %d, before the applied entry %d", st.LastIndex, idx)
	}
}

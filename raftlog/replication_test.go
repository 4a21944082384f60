package raftlog

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/internal/testkit"
)

// failingLogs is a log store whose writes fail while failing is set, as a
// full disk makes them.
type failingLogs struct {
	raft.LogStore
	failing *atomic.Bool
	failed  *atomic.Int64
}

var errDiskFull = errors.New("write raft.db: no space left on device")

func (f failingLogs) StoreLog(l *raft.Log) error { return f.StoreLogs([]*raft.Log{l}) }

func (f failingLogs) StoreLogs(logs []*raft.Log) error {
	if f.failing.Load() {
		f.failed.Add(1)
		return errDiskFull
	}
	return f.LogStore.StoreLogs(logs)
}

// A follower whose log writes fail for a while catches up by itself once
// they succeed again, with the same leader in the same term; and the
// leader stops within its shutdown timeout meanwhile.
func TestFollowerCatchesUpAfterFailedWrites(t *testing.T) {
	var failing atomic.Bool
	var failed atomic.Int64
	// The FSMs' channels hold every entry this test applies.
	open2 := func(id string, wrap func(raft.LogStore) raft.LogStore) *Raft {
		r, err := Open(Config{ID: id, Dir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: id == "a",
			FSM: &countFSM{applied: make(chan uint64, 1<<16)}, wrapLogs: wrap})
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		t.Cleanup(func() { _ = r.Shutdown() })
		return r
	}
	a := open2("a", nil)
	waitLeader(t, a)
	b := open2("b", func(s raft.LogStore) raft.LogStore { return failingLogs{s, &failing, &failed} })
	c := open2("c", nil)
	for _, r := range []*Raft{b, c} {
		if _, err := a.Join(r.ID(), r.LocalAddr()); err != nil {
			t.Fatalf("join %s: %v", r.ID(), err)
		}
	}
	// apply commits n entries from 16 concurrent writers, so the leader
	// keeps replication busy (the pipeline wedge needs new entries to be
	// waiting when the follower's failure comes back).
	apply := func(n int) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					if _, _, err := a.Apply(t.Context(), []byte(fmt.Sprintf("entry-%d", i))); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("apply: %v", err)
		}
	}
	apply(20)
	term := a.Status().Term

	// b's writes fail, succeed, fail… while a and c commit under load.
	// (With raft's pipeline this wedged b in about one run of three.)
	for range 20 {
		failing.Store(true)
		apply(100)
		failing.Store(false)
		apply(100)
	}
	if failed.Load() == 0 {
		t.Fatal("b never failed a write")
	}
	want := a.Status().CommitIndex
	testkit.WaitFor(t, 20*time.Second, "b to catch up once it can write again", func() (bool, string) {
		st := b.Status()
		return st.AppliedIndex >= want, fmt.Sprintf("b applied %d of %d (last log %d)", st.AppliedIndex, want, st.LastIndex)
	})
	if id, _ := a.Leader(); id != "a" || a.Status().Term != term {
		t.Fatalf("leader %q term %d after the catch-up, want a in term %d (no leader change)", id, a.Status().Term, term)
	}
	t.Logf("b failed %d writes, then caught up to %d without a leader change", failed.Load(), want)

	// The leader stops within its shutdown timeout while a follower's
	// writes fail.
	failing.Store(true)
	apply(50)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Shutdown() }()
	select {
	case <-done:
		t.Logf("the leader stopped in %s while a follower's writes failed", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("the leader did not stop within 15 s while a follower's writes failed")
	}
}

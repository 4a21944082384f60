package fsm_test

import (
	"testing"
	"time"
)

// A restore does not wait for a snapshot that still holds the old store:
// Raft's snapshot goroutine can hold one while it waits for the apply loop
// that runs the restore (a follower installing the leader's snapshot
// deadlocked that way). The held snapshot still persists the old state.
func TestRestoreWhileASnapshotIsOpen(t *testing.T) {
	_, data, want := populatedSnapshot(t)

	dst := newTestFSM(t, snapshotConfig)
	dst.mustApply(t0, repeat(toAll(), 30)...)
	before := dst.snapshot(t)
	held, err := dst.Snapshot() // not released until after the restore
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dst.restore(data) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restore while a snapshot is open: %v", err)
		}
	case <-time.After(10 * time.Second):
		held.Release()
		t.Fatal("restore waited for the open snapshot (10 s): the apply loop would deadlock")
	}
	checkSameState(t, dst, want)
	if got := persist(t, held); string(got) != string(before) {
		t.Fatalf("the snapshot held across the restore persisted %d bytes that differ from the state it was taken of (%d bytes)", len(got), len(before))
	}
}

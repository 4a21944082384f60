package raftlog

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/internal/testkit"
)

// A member removed moments ago cannot join again at the same address, and
// the leader dials it no more, until the removed member's last replication
// is surely over (membership.go, removedQuarantine); then it joins and
// catches up. Another address joins at once.
func TestRejoinAfterRemovalWaits(t *testing.T) {
	old := removedQuarantine
	removedQuarantine = 2 * time.Second
	t.Cleanup(func() { removedQuarantine = old })

	a := open(t, "a", t.TempDir(), true)
	defer a.Shutdown()
	waitLeader(t, a)
	b := open(t, "b", t.TempDir(), false)
	defer b.Shutdown()
	c := open(t, "c", t.TempDir(), false)
	defer c.Shutdown()
	for _, r := range []*Raft{b, c} {
		if _, err := a.Join(r.ID(), r.LocalAddr()); err != nil {
			t.Fatalf("join %s: %v", r.ID(), err)
		}
	}
	if err := a.Remove("c"); err != nil {
		t.Fatalf("remove c: %v", err)
	}
	removed := time.Now()
	_, err := a.Join("c", c.LocalAddr())
	if !errors.Is(err, ErrRecentlyRemoved) {
		t.Fatalf("join c again at once: %v, want ErrRecentlyRemoved", err)
	}
	t.Logf("refused: %v", err)
	if _, err := a.streams.Dial(raft.ServerAddress(c.LocalAddr()), time.Second); err == nil {
		t.Fatal("the leader could dial the member it just removed")
	}

	// Another member at another address is not held up.
	d := open(t, "d", t.TempDir(), false)
	defer d.Shutdown()
	if _, err := a.Join("d", d.LocalAddr()); err != nil {
		t.Fatalf("join d: %v", err)
	}

	testkit.WaitFor(t, 10*time.Second, "c to be let in again", func() (bool, string) {
		_, err := a.Join("c", c.LocalAddr())
		return err == nil, fmt.Sprint(err)
	})
	if waited := time.Since(removed); waited < removedQuarantine {
		t.Fatalf("c joined again %s after its removal, before the %s quarantine", waited, removedQuarantine)
	}
	if _, _, err := a.Apply(t.Context(), []byte("after the re-join")); err != nil {
		t.Fatal(err)
	}
	want := a.Status().CommitIndex
	testkit.WaitFor(t, 10*time.Second, "c to catch up", func() (bool, string) {
		st := c.Status()
		return st.AppliedIndex >= want, fmt.Sprintf("c applied %d of %d", st.AppliedIndex, want)
	})
}

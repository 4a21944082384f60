package fsm_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A wait is woken by an entry that changes what it watches: the messages
// of its hub, its connection's record and groups, its user's groups. Other
// hubs' messages, other connections' opens and joins in the same hub, and
// entries of no hub leave it open.
func TestChangesWakeOnlyForWhatChanged(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	msgs, _ := f.Changes(fsm.MessagesOf(hub))
	conn, _ := f.Changes(fsm.ConnectionOf(hub, "c1"))
	user, _ := f.Changes(fsm.UserOf(hub, "u1"))
	other, _ := f.Changes(fsm.MessagesOf("other"))
	state := func() string {
		return fmt.Sprintf("messages %v, connection %v, user %v, other hub %v", isClosed(msgs), isClosed(conn), isClosed(user), isClosed(other))
	}
	want := func(what, closed string) {
		t.Helper()
		if got := state(); got != closed {
			t.Fatalf("after %s: got %s, want %s", what, got, closed)
		}
	}
	want("nothing", "messages false, connection false, user false, other hub false")
	f.mustApply(t0, fsm.EncodePublish(&fsm.Publish{Hub: "other", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}))
	want("a message of another hub", "messages false, connection false, user false, other hub true")
	f.mustApply(t0, connOpen("c2", "u2", "n1"), join("g1", fsm.MemberConnection, "c2"), join("g1", fsm.MemberUser, "u2"),
		fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}))
	want("another connection's open and joins, and a node record", "messages false, connection false, user false, other hub true")
	f.mustApply(t0, connOpen("c1", "u1", "n1"))
	want("the connection's open", "messages false, connection true, user false, other hub true")
	f.mustApply(t0, join("g1", fsm.MemberUser, "u1"))
	want("the user's join", "messages false, connection true, user true, other hub true")
	f.mustApply(t0, publish(fsm.ToGroups, "g1"))
	want("a message of the hub", "messages true, connection true, user true, other hub true")
	if next, _ := f.Changes(fsm.MessagesOf(hub)); isClosed(next) {
		t.Fatal("Changes after a wake: got a closed channel, want a new open one")
	}
	conn, _ = f.Changes(fsm.ConnectionOf(hub, "c1"))
	f.mustApply(t0, connClose("c1"))
	if !isClosed(conn) {
		t.Fatal("after the connection's close: got its channel open, want closed")
	}
}

// A wait on several watches fires once, at the first change of any of
// them; stopped, it is gone from every watch.
func TestChangesOfSeveralWatches(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	msg := func(h string) fsm.Command {
		return fsm.EncodePublish(&fsm.Publish{Hub: h, Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)})
	}
	both, stop := f.Changes(fsm.MessagesOf("a"), fsm.MessagesOf("b"))
	defer stop()
	f.mustApply(t0, msg("c"))
	if isClosed(both) {
		t.Fatal("after a message of hub c: got the wait on a and b closed, want open")
	}
	f.mustApply(t0, msg("b"))
	if !isClosed(both) {
		t.Fatal("after a message of hub b: got the wait on a and b open, want closed")
	}
	f.mustApply(t0, msg("a")) // must not close it again (a panic)

	stopped, stop2 := f.Changes(fsm.MessagesOf("a"), fsm.MessagesOf("b"))
	stop2()
	f.mustApply(t0, msg("a"), msg("b"))
	if isClosed(stopped) {
		t.Fatal("a stopped wait: got its channel closed by a later change, want it forgotten")
	}
	if n := fsm.ListedWaits(f.FSM); n != 0 {
		t.Fatalf("waits listed after every wait fired or stopped: got %d, want 0", n)
	}
}

// A user's group membership whose time runs out is a change of the user,
// although no command names it.
func TestChangesWhenAGroupTimeRunsOut(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g1", User: "u1", TTL: 1}))
	waiting, _ := f.Changes(fsm.UserOf(hub, "u1"))
	f.mustApply(t0+int64(2*time.Second), fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}))
	if !isClosed(waiting) {
		t.Fatal("after the user's group membership expired: got its channel open, want closed")
	}
}

// A batch too large for the tail still wakes the readers of every hub it
// wrote to, including hubs whose messages did not stay in the tail.
func TestChangesAfterAHugeBatch(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	early, _ := f.Changes(fsm.MessagesOf("early"))
	cmds := []fsm.Command{fsm.EncodePublish(&fsm.Publish{Hub: "early", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)})}
	cmds = append(cmds, repeat(toAll(), 9000)...)
	f.mustApply(t0, cmds...)
	if !isClosed(early) {
		t.Fatal("a batch of 9,001 messages whose first was for hub early: got early's channel open, want closed")
	}
}

// Restoring a snapshot and closing the store wake every hub's readers: the
// state they read changed under them.
func TestChangesOnRestoreAndClose(t *testing.T) {
	src := newTestFSM(t, fsm.Config{})
	src.mustApply(t0, toAll())
	data := src.snapshot(t)

	f := newTestFSM(t, fsm.Config{})
	waiting, _ := f.Changes(fsm.MessagesOf("quiet"))
	if err := f.restore(data); err != nil {
		t.Fatalf("Restore: got error %v, want nil", err)
	}
	if !isClosed(waiting) {
		t.Fatal("after a restore: got the channel open, want closed")
	}
	waiting, _ = f.Changes(fsm.ConnectionOf("quiet", "c1"))
	if err := f.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
	if !isClosed(waiting) {
		t.Fatal("after Close: got the channel open, want closed")
	}
}

// WaitRead at the end of a hub keeps waiting through other hubs' traffic
// and returns with its own hub's next message.
func TestWaitReadIgnoresOtherHubs(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := f.waitRead(ctx, &fsm.Filter{Hub: hub, Broadcast: true}, f.LastMessage())
	for range 20 {
		f.mustApply(t0, fsm.EncodePublish(&fsm.Publish{Hub: "busy", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}))
	}
	select {
	case res := <-done:
		t.Fatalf("WaitRead on %s returned %v, %v after messages of another hub, want it still waiting", hub, indexesOf(res.page.Messages), res.err)
	default:
	}
	f.mustApply(t0, toAll())
	res := <-done
	if res.err != nil || len(res.page.Messages) != 1 || res.page.Messages[0].Index != 22 {
		t.Fatalf("WaitRead: got %v, %v, want [22], nil", indexesOf(res.page.Messages), res.err)
	}
}

// BenchmarkApplyWithIdleStreams applies one message of a busy hub per op
// while 1,000 readers wait at the end of other, quiet hubs: what every
// idle native stream on a node costs the apply of traffic it does not
// read.
func BenchmarkApplyWithIdleStreams(b *testing.B) {
	f := newTestFSM(b, fsm.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var waiting sync.WaitGroup
	for i := range 1000 {
		r := &fsm.Filter{Hub: fmt.Sprintf("quiet%d", i%10), Broadcast: true}
		waiting.Go(func() { _, _ = f.WaitRead(ctx, r, 0, 10) })
	}
	defer func() { cancel(); waiting.Wait() }()
	busy := fsm.EncodePublish(&fsm.Publish{Hub: "busy", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)})
	b.ResetTimer()
	for range b.N {
		f.mustApply(t0, busy)
	}
}

// AfterChange calls its function once, at the next message of its hub;
// a stopped call never comes, and stop tells which happened.
func TestAfterChange(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	called := make(chan string, 4)
	stop := f.AfterChange([]fsm.Watch{fsm.MessagesOf(hub)}, func() { called <- "first" })
	stopped := f.AfterChange([]fsm.Watch{fsm.MessagesOf(hub)}, func() { called <- "stopped" })
	if !stopped() {
		t.Fatal("stop before any change: got false, want true (the call is cancelled)")
	}
	f.mustApply(t0, fsm.EncodePublish(&fsm.Publish{Hub: "other", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}))
	select {
	case got := <-called:
		t.Fatalf("after a change of another hub: got call %q, want none", got)
	default:
	}
	f.mustApply(t0, toAll(), toAll())
	select {
	case got := <-called:
		if got != "first" {
			t.Fatalf("after a change of %s: got call %q, want first", hub, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("after a change of %s: no call within 10s", hub)
	}
	if stop() {
		t.Fatal("stop after the call: got true, want false")
	}
	f.mustApply(t0, toAll())
	select {
	case got := <-called:
		t.Fatalf("a second change: got call %q, want none (a call fires once)", got)
	default:
	}
	if n := fsm.ListedWaits(f.FSM); n != 0 {
		t.Fatalf("waits listed after the call fired and the other stopped: got %d, want 0", n)
	}
}

// AfterChange on several watches calls its function once, at the first change of any of
// its hubs.
func TestAfterChangeOfSeveralWatches(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	called := make(chan struct{}, 2)
	f.AfterChange([]fsm.Watch{fsm.MessagesOf("a"), fsm.MessagesOf("b")}, func() { called <- struct{}{} })
	f.mustApply(t0, fsm.EncodePublish(&fsm.Publish{Hub: "b", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}),
		fsm.EncodePublish(&fsm.Publish{Hub: "a", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}))
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("after a change of hubs a and b: no call within 10s")
	}
	if n := fsm.ListedWaits(f.FSM); n != 0 {
		t.Fatalf("waits listed after the call: got %d, want 0", n)
	}
	select {
	case <-called:
		t.Fatal("a second call for one wait, want one")
	default:
	}
}

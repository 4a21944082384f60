package fsm_test

import (
	"fmt"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// historyIntervals counts the history bucket's intervals, failing the test
// on error.
func historyIntervals(t *testing.T, f *testFSM) (n, closed int) {
	t.Helper()
	n, closed, err := fsm.HistoryIntervals(f.FSM)
	if err != nil {
		t.Fatalf("HistoryIntervals: got error %v, want nil", err)
	}
	return n, closed
}

// cycleGroups has member join a group, a message go to the group, the
// member leave it, and a broadcast follow, rounds times over groups
// groups: two messages per round.
func cycleGroups(f *testFSM, kind fsm.MemberKind, member string, groups, rounds int) {
	for i := range rounds {
		g := fmt.Sprintf("g%d", i%groups)
		f.mustApply(t0, join(g, kind, member))
		f.mustApply(t0, publish(fsm.ToGroups, g))
		f.mustApply(t0, leave(g, kind, member))
		f.mustApply(t0, publish(fsm.ToAll))
	}
}

// A user's group history is kept only while one of its stateful
// connections could read it: within retention, and after the earliest of
// those connections opened. Many joins and leaves past retention leave a
// bounded history, and what a stateful connection reads is unchanged.
func TestUserHistoryIsTrimmedPastRetention(t *testing.T) {
	const groups, rounds, retain = 5, 1000, 10
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: retain}})
	f.mustApply(t0, statefulOpen("c1", "u1")) // u1's history is read through c1
	cycleGroups(f, fsm.MemberUser, "u1", groups, rounds)

	// Each round's interval holds one group message and ends before the
	// round's broadcast; a group's dead intervals go at its next change,
	// so at most two per group remain (the live one and one dead).
	n, closed := historyIntervals(t, f)
	if n != closed || closed > 2*groups {
		t.Fatalf("history after %d rounds: got %d intervals (%d closed), want at most %d, all closed", rounds, n, closed, 2*groups)
	}
	// The intervals still inside retention are all there: c1 reads the
	// last rounds' group messages.
	last := f.LastMessage()
	events, open, err := f.ReadConnection(hub, "c1", fsm.Position{Msg: last - 6, Order: 1}, 100)
	if err != nil || !open {
		t.Fatalf("ReadConnection: got open=%v err=%v, want open, nil", open, err)
	}
	got := describe(events)
	want := []string{"m" + itoa(last-5), "m" + itoa(last-4), "m" + itoa(last-3), "m" + itoa(last-2), "m" + itoa(last-1), "m" + itoa(last)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("c1's stream over the last three rounds: got %v, want %v", got, want)
	}
}

// A user without a stateful connection keeps only its current
// memberships: nobody can read a closed interval (a stateful connection
// opened later starts after it).
func TestUserHistoryWithoutStatefulConnectionKeepsOnlyMemberships(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, connOpen("plain", "u1", "n1")) // not stateful: reads no history
	cycleGroups(f, fsm.MemberUser, "u1", 7, 300)
	if n, _ := historyIntervals(t, f); n != 0 {
		t.Fatalf("history after 300 rounds: got %d intervals, want 0", n)
	}
	f.mustApply(t0, join("room", fsm.MemberUser, "u1"))
	if n, closed := historyIntervals(t, f); n != 1 || closed != 0 {
		t.Fatalf("history of one membership: got %d intervals (%d closed), want 1 open", n, closed)
	}
	// Once a stateful connection opens, it reads from its open position.
	f.mustApply(t0, statefulOpen("c1", "u1"))
	f.mustApply(t0, publish(fsm.ToGroups, "room"))
	events, _, err := f.ReadConnection(hub, "c1", fsm.Position{}, 10)
	if err != nil || len(events) != 1 || events[0].Message == nil || events[0].Message.Index != f.LastMessage() {
		t.Fatalf("c1's stream: got %v (err %v), want the message to room", describe(events), err)
	}
}

// Joining and leaving with no message in between records nothing: the
// interval (from, from] holds no message.
func TestEmptyMembershipIntervalsAreDropped(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, statefulOpen("c1", "u1"))
	for range 100 {
		f.mustApply(t0, join("g", fsm.MemberUser, "u1"), leave("g", fsm.MemberUser, "u1"))
		f.mustApply(t0, join("g", fsm.MemberConnection, "c1"))
		f.mustApply(t0, leave("g", fsm.MemberConnection, "c1"))
	}
	if n, _ := historyIntervals(t, f); n != 0 {
		t.Fatalf("history after 100 empty memberships: got %d intervals, want 0", n)
	}
}

// A stateful connection's own history follows the same rule while it is
// open, and goes when it closes.
func TestConnectionHistoryIsTrimmedPastRetention(t *testing.T) {
	const groups, rounds, retain = 4, 500, 8
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: retain}})
	f.mustApply(t0, statefulOpen("c1", ""))
	cycleGroups(f, fsm.MemberConnection, "c1", groups, rounds)
	if n, _ := historyIntervals(t, f); n > 2*groups {
		t.Fatalf("history after %d rounds: got %d intervals, want at most %d", rounds, n, 2*groups)
	}
	f.mustApply(t0, connClose("c1"))
	if n, _ := historyIntervals(t, f); n != 0 {
		t.Fatalf("history after the close: got %d intervals, want 0", n)
	}
}

package fsm_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// checkGroups fails the test unless member belongs to exactly want (in any
// order).
func checkGroups(t *testing.T, f *testFSM, kind fsm.MemberKind, member string, want ...string) {
	t.Helper()
	got, err := f.GroupsOf(hub, kind, member)
	if err != nil {
		t.Fatalf("GroupsOf(%s): got error %v, want nil", member, err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("GroupsOf(%s): got %q, want %q", member, got, want)
	}
	for _, g := range want {
		if ok, err := f.IsMember(hub, g, kind, member); err != nil || !ok {
			t.Fatalf("IsMember(%s, %s): got %v, %v, want true, nil", g, member, ok, err)
		}
	}
}

// checkHasMembers fails the test unless GroupHasMembers answers want.
func checkHasMembers(t *testing.T, f *testFSM, group string, want bool) {
	t.Helper()
	if got, err := f.GroupHasMembers(hub, group); err != nil || got != want {
		t.Fatalf("GroupHasMembers(%q): got %v, %v, want %v, nil", group, got, err, want)
	}
}

// checkUser fails the test unless UserHasConnections answers want.
func checkUser(t *testing.T, f *testFSM, user string, want bool) {
	t.Helper()
	if got, err := f.UserHasConnections(hub, user); err != nil || got != want {
		t.Fatalf("UserHasConnections(%s): got %v, %v, want %v, nil", user, got, err, want)
	}
}

func TestGroupMembership(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	other := fsm.EncodeMembership(&fsm.Membership{Hub: "other", Group: "g1", Kind: fsm.MemberConnection, Member: "c1"}, true)
	f.mustApply(t0,
		join("g1", fsm.MemberConnection, "c1"), join("g2", fsm.MemberConnection, "c1"),
		join("g1", fsm.MemberUser, "u1"), join("g3", fsm.MemberUser, "u1"),
		join("g1", fsm.MemberUser, "u1"), // again: no change
		join("g1x", fsm.MemberUser, "u2"), other)
	checkGroups(t, f, fsm.MemberConnection, "c1", "g1", "g2")
	checkGroups(t, f, fsm.MemberUser, "u1", "g1", "g3")
	if ok, err := f.IsMember(hub, "g1", fsm.MemberUser, "c1"); err != nil || ok {
		t.Fatalf("IsMember(g1, user c1): got %v, %v, want false: kinds are distinct", ok, err)
	}
	for _, g := range []string{"g1", "g2", "g3", "g1x"} {
		checkHasMembers(t, f, g, true)
	}
	checkHasMembers(t, f, "g", false) // a prefix of g1 and g1x is not a group
	checkHasMembers(t, f, "g4", false)

	f.mustApply(t0, leave("g1", fsm.MemberConnection, "c1"), leave("g9", fsm.MemberConnection, "c1"))
	checkGroups(t, f, fsm.MemberConnection, "c1", "g2")
	checkHasMembers(t, f, "g1", true) // u1 is still in it

	// An empty group removes the member from every group of the hub.
	f.mustApply(t0, leave("", fsm.MemberUser, "u1"))
	checkGroups(t, f, fsm.MemberUser, "u1")
	checkHasMembers(t, f, "g1", false)
	checkHasMembers(t, f, "g3", false)
	checkGroups(t, f, fsm.MemberUser, "u2", "g1x")
	if ok, err := f.IsMember("other", "g1", fsm.MemberConnection, "c1"); err != nil || !ok {
		t.Fatalf("IsMember in another hub: got %v, %v, want true, nil", ok, err)
	}
}

func TestConnections(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, connOpen("c1", "u1", "n1"), connOpen("c2", "u1", "n2"), connOpen("c3", "", "n1"),
		join("g1", fsm.MemberConnection, "c1"), join("g2", fsm.MemberConnection, "c1"),
		join("g1", fsm.MemberUser, "u1"))
	want := fsm.ConnectionInfo{Hub: hub, ConnID: "c1", UserID: "u1", NodeID: "n1"}
	if got, ok, err := f.Connection(hub, "c1"); err != nil || !ok || got != want {
		t.Fatalf("Connection(c1): got %+v, %v, %v, want %+v, true, nil", got, ok, err, want)
	}
	if got, ok, err := f.Connection("other", "c1"); err != nil || ok {
		t.Fatalf("Connection in another hub: got %+v, %v, %v, want not found", got, ok, err)
	}
	checkUser(t, f, "u1", true)
	checkUser(t, f, "u2", false)
	if st, err := f.Stats(); err != nil || st.Connections != 3 {
		t.Fatalf("Stats().Connections: got %d, %v, want 3", st.Connections, err)
	}

	// A close forgets the connection and its groups, not its user's groups.
	f.mustApply(t0, connClose("c1"))
	if got, ok, err := f.Connection(hub, "c1"); err != nil || ok {
		t.Fatalf("Connection(c1) after close: got %+v, %v, %v, want not found", got, ok, err)
	}
	checkGroups(t, f, fsm.MemberConnection, "c1")
	checkHasMembers(t, f, "g2", false)
	checkUser(t, f, "u1", true) // c2 is still open

	// Expiry is a close decided by the cluster.
	f.mustApply(t0, fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: hub, ConnID: "c2", Reason: "timeout"}))
	checkUser(t, f, "u1", false)
	checkGroups(t, f, fsm.MemberUser, "u1", "g1")

	// Closing an unknown connection changes nothing.
	f.mustApply(t0, connClose("c9"))
	if st, err := f.Stats(); err != nil || st.Connections != 1 {
		t.Fatalf("Stats().Connections: got %d, %v, want 1", st.Connections, err)
	}
}

func TestConnectionReopen(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	// A stateful reconnect resumes the connection on another node.
	f.mustApply(t0, connOpen("c1", "u1", "n1"), join("g", fsm.MemberConnection, "c1"))
	f.mustApply(t0, connOpen("c1", "u1", "n2"))
	want := fsm.ConnectionInfo{Hub: hub, ConnID: "c1", UserID: "u1", NodeID: "n2"}
	if got, ok, err := f.Connection(hub, "c1"); err != nil || !ok || got != want {
		t.Fatalf("Connection(c1) after reopen: got %+v, %v, %v, want %+v, true, nil", got, ok, err, want)
	}
	checkGroups(t, f, fsm.MemberConnection, "c1", "g")

	// Reopened under another user, the connection no longer counts for the
	// first one, now or after it closes.
	f.mustApply(t0, connOpen("c1", "u2", "n2"))
	checkUser(t, f, "u1", false)
	checkUser(t, f, "u2", true)
	f.mustApply(t0, connClose("c1"))
	checkUser(t, f, "u1", false)
	checkUser(t, f, "u2", false)
}

func TestStats(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll(), publish(fsm.ToGroups, "g"), connOpen("c1", "", "n1"))
	f.mustApply(t0, publish(fsm.ToUsers, "u"))
	st, n, size := mustStats(t, f)
	want := fsm.Stats{AppliedIndex: 2, FirstMessage: 1, LastMessage: 3, RetainedMessages: 3,
		RetainedBytes: size, Connections: 1, StoreFileBytes: st.StoreFileBytes}
	if st != want || n != 3 || st.StoreFileBytes <= 0 {
		t.Fatalf("Stats: got %+v (%d records stored), want %+v (3 records) and a store size", st, n, want)
	}
}

func TestNewStartsEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "state")
	old := newTestFSM(t, fsm.Config{Dir: dir})
	old.mustApply(t0, toAll(), toAll(), join("g", fsm.MemberUser, "u"), connOpen("c", "u", "n"),
		fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1"}))
	if err := old.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}

	// The store is a cache of the Raft log: a new run rebuilds it.
	f := newTestFSM(t, fsm.Config{Dir: dir})
	if got, want := [3]uint64{f.AppliedIndex(), f.FirstMessage(), f.LastMessage()}, [3]uint64{0, 1, 0}; got != want {
		t.Fatalf("applied, first, last: got %v, want %v", got, want)
	}
	st, err := f.Stats()
	if err != nil || st.RetainedMessages != 0 || st.RetainedBytes != 0 || st.Connections != 0 || st.LastMessage != 0 {
		t.Fatalf("Stats: got %+v, %v, want an empty store", st, err)
	}
	if page := f.read(&fsm.Filter{Hub: hub, Broadcast: true}, 0, 10); len(page.Messages) != 0 || page.Reset || page.Next != 0 {
		t.Fatalf("Read: got %+v, want an empty page at 0", page)
	}
	checkHasMembers(t, f, "g", false)
	checkUser(t, f, "u", false)
	if nodes, err := f.Nodes(); err != nil || len(nodes) != 0 {
		t.Fatalf("Nodes: got %v, %v, want none", nodes, err)
	}
	checkIndexes(t, "first publish", indexesOf(f.mustApply(t0, toAll())), []uint64{1})
}

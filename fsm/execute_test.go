package fsm_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// sendAction is an ExecSend of target with one argument.
func sendAction(target string) fsm.ExecAction {
	return fsm.ExecAction{Kind: fsm.ExecSend, Target: target, Arguments: []byte(`["x"]`)}
}

// lastMessage reads the newest message of the whole log.
func lastMessage(t *testing.T, f *testFSM) fsm.Message {
	t.Helper()
	page, err := f.ReadAll(f.LastMessage()-1, 1)
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("ReadAll of the last message: got %v, %v", page.Messages, err)
	}
	return page.Messages[0]
}

func isOpen(t *testing.T, f *testFSM, conn string) bool {
	t.Helper()
	_, ok, err := f.Connection(hub, conn)
	if err != nil {
		t.Fatalf("Connection(%s): %v", conn, err)
	}
	return ok
}

func isMember(t *testing.T, f *testFSM, group string, kind fsm.MemberKind, member string) bool {
	t.Helper()
	ok, err := f.IsMember(hub, group, kind, member)
	if err != nil {
		t.Fatalf("IsMember(%s, %s): %v", group, member, err)
	}
	return ok
}

// execFixture opens c1 and c3 (alice), c2 (bob) and c4 (anonymous);
// alice is in g1 as a user, c2 as a connection, c4 is in g2.
func execFixture(t *testing.T) *testFSM {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, connOpen("c1", "alice", "n1"), connOpen("c2", "bob", "n2"), connOpen("c3", "alice", "n3"), connOpen("c4", "", "n1"),
		join("g1", fsm.MemberUser, "alice"), join("g1", fsm.MemberConnection, "c2"), join("g2", fsm.MemberConnection, "c4"))
	return f
}

func TestExecuteSendReachesExactlyTheMatchedConnections(t *testing.T) {
	for _, c := range []struct {
		name string
		x    fsm.Execute
		want []string
	}{
		{"filter by group and user", fsm.Execute{Filter: "'g1' in groups and userId ne 'bob'"}, []string{"c1", "c3"}},
		{"filter by user", fsm.Execute{Filter: "userId eq 'bob' or userId eq null"}, []string{"c2", "c4"}},
		{"no filter: the hub", fsm.Execute{}, []string{"c1", "c2", "c3", "c4"}},
		{"excluded", fsm.Execute{Excluded: []string{"c2", "c9"}}, []string{"c1", "c3", "c4"}},
		{"a group", fsm.Execute{Group: "g1"}, []string{"c1", "c2", "c3"}},
		{"a group and a filter", fsm.Execute{Group: "g1", Filter: "connectionId ne 'c1'"}, []string{"c2", "c3"}},
		{"a user", fsm.Execute{User: "alice", Excluded: []string{"c3"}}, []string{"c1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := execFixture(t)
			x := c.x
			x.Hub, x.Actions = hub, []fsm.ExecAction{sendAction("hello")}
			res := f.mustApply(t0, fsm.EncodeExecute(&x))
			if res[0].Index != f.LastMessage() || res[0].Index == 0 {
				t.Fatalf("result index: got %d, want the new last message %d", res[0].Index, f.LastMessage())
			}
			m := lastMessage(t, f)
			if m.Audience != fsm.ToConnections || !slices.Equal(m.Names, c.want) || m.Target != "hello" || string(m.Arguments) != `["x"]` {
				t.Fatalf("message: got %v to %v (%s %s), want to connections %v", m.Audience, m.Names, m.Target, m.Arguments, c.want)
			}
			// Each matched connection reads it on its own stream, the others do not.
			for _, conn := range []string{"c1", "c2", "c3", "c4"} {
				page := f.read(&fsm.Filter{Hub: hub, Connections: []string{conn}, Self: conn}, 0, 10)
				got := len(page.Messages) == 1
				if got != slices.Contains(c.want, conn) {
					t.Fatalf("%s reads %v, want it to read the message: %v", conn, page.Messages, !got)
				}
			}
		})
	}
}

func TestExecuteMatchesNothing(t *testing.T) {
	f := execFixture(t)
	last := f.LastMessage()
	res := f.mustApply(t0, fsm.EncodeExecute(&fsm.Execute{Hub: hub, Filter: "userId eq 'nobody'", Actions: []fsm.ExecAction{sendAction("t"), {Kind: fsm.ExecClose}}}))
	if res[0].Index != 0 || f.LastMessage() != last {
		t.Fatalf("got index %d and last message %d, want 0 and %d: nothing appended", res[0].Index, f.LastMessage(), last)
	}
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		if !isOpen(t, f, c) {
			t.Fatalf("%s was closed by an execute that matched nothing", c)
		}
	}
	// Another hub's connections are never selected.
	f.mustApply(t0, fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "other", ConnID: "o1", UserID: "alice", NodeID: "n1"}))
	f.mustApply(t0, fsm.EncodeExecute(&fsm.Execute{Hub: hub, Filter: "userId eq 'alice'", Actions: []fsm.ExecAction{{Kind: fsm.ExecClose}}}))
	if _, ok, _ := f.Connection("other", "o1"); !ok {
		t.Fatalf("a connection of another hub was closed")
	}
}

func TestExecuteActionsInOrder(t *testing.T) {
	f := execFixture(t)
	x := &fsm.Execute{Hub: hub, Filter: "'g1' in groups", Actions: []fsm.ExecAction{
		{Kind: fsm.ExecJoin, Group: "g5"},
		{Kind: fsm.ExecLeave, Group: "g1"},
		{Kind: fsm.ExecClose, Reason: "bye"},
		sendAction("after close"),
		{Kind: fsm.ExecJoin, Group: "g6"},
	}}
	last := f.LastMessage()
	res := f.mustApply(t0, fsm.EncodeExecute(x))
	// c1, c2, c3 matched: joined g5, then closed, which drops every
	// membership; the send and the join after the close reach no one.
	if res[0].Index != 0 || f.LastMessage() != last {
		t.Fatalf("send after close: got index %d, want none", res[0].Index)
	}
	for _, c := range []string{"c1", "c2", "c3"} {
		if isOpen(t, f, c) || isMember(t, f, "g5", fsm.MemberConnection, c) || isMember(t, f, "g6", fsm.MemberConnection, c) {
			t.Fatalf("%s: open or still a member after the close", c)
		}
	}
	if !isOpen(t, f, "c4") || !isMember(t, f, "g2", fsm.MemberConnection, "c4") {
		t.Fatalf("c4 did not match and must be untouched")
	}
	// The user's own membership is not a connection's: leave removes
	// connection members only.
	if !isMember(t, f, "g1", fsm.MemberUser, "alice") {
		t.Fatalf("alice's user membership of g1 was removed by a connection leave")
	}

	// Join, then a send that sees the join, in one command.
	f2 := execFixture(t)
	f2.mustApply(t0, fsm.EncodeExecute(&fsm.Execute{Hub: hub, User: "alice", Actions: []fsm.ExecAction{{Kind: fsm.ExecJoin, Group: "g7"}}}))
	for _, c := range []string{"c1", "c3"} {
		if !isMember(t, f2, "g7", fsm.MemberConnection, c) {
			t.Fatalf("%s: not in g7 after the join", c)
		}
	}
	if isMember(t, f2, "g7", fsm.MemberConnection, "c2") {
		t.Fatalf("c2 is not alice's and must not join")
	}
}

func TestExecuteSendsInChunks(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	n := fsm.MaxNamesPerSend + 5
	var opens []fsm.Command
	for i := range n {
		opens = append(opens, connOpen(fmt.Sprintf("c%05d", i), "", "n1"))
	}
	f.mustApply(t0, opens...)
	res := f.mustApply(t0, fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{sendAction("t")}}))
	if res[0].Index != 2 || f.LastMessage() != 2 {
		t.Fatalf("got index %d, last %d, want 2 messages", res[0].Index, f.LastMessage())
	}
	page, err := f.ReadAll(0, 10)
	if err != nil || len(page.Messages) != 2 {
		t.Fatalf("ReadAll: %v, %v", page.Messages, err)
	}
	if a, b := len(page.Messages[0].Names), len(page.Messages[1].Names); a != fsm.MaxNamesPerSend || b != 5 {
		t.Fatalf("chunks: got %d and %d names, want %d and 5", a, b, fsm.MaxNamesPerSend)
	}
}

func TestExecuteRejectsInvalid(t *testing.T) {
	f := execFixture(t)
	send := []fsm.ExecAction{sendAction("t")}
	for _, c := range []struct {
		name string
		cmd  fsm.Command
	}{
		{"bad filter", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Filter: "userId eq", Actions: send})},
		{"group and user", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Group: "g", User: "u", Actions: send})},
		{"no action", fsm.EncodeExecute(&fsm.Execute{Hub: hub})},
		{"too many actions", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: slices.Repeat(send, fsm.MaxExecActions+1)})},
		{"bad hub", fsm.EncodeExecute(&fsm.Execute{Hub: "1hub", Actions: send})},
		{"no target", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{{Kind: fsm.ExecSend, Arguments: []byte("[]")}}})},
		{"arguments not an array", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{{Kind: fsm.ExecSend, Target: "t", Arguments: []byte("{}")}}})},
		{"join no group", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{{Kind: fsm.ExecJoin}}})},
		{"long reason", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{{Kind: fsm.ExecClose, Reason: string(make([]byte, fsm.MaxReasonLen+1))}}})},
		{"unknown action", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: []fsm.ExecAction{{Kind: 9}}})},
		{"empty excluded id", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Excluded: []string{""}, Actions: send})},
		{"truncated", fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: send})[:9]},
		{"trailing bytes", append(fsm.EncodeExecute(&fsm.Execute{Hub: hub, Actions: send}), 0)},
		{"bad ttl user", fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g"})},
		{"ttl too long", fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g", User: "u", TTL: fsm.MaxGroupTTL + 1})},
		{"tick with a payload", fsm.Command{byte(fsm.CmdTick), 1}},
	} {
		if err := fsm.ValidateCommand(c.cmd); !errors.Is(err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: ValidateCommand: got %v, want one wrapping %v", c.name, err, fsm.ErrInvalidCommand)
		}
		last := f.LastMessage()
		res := f.apply(t0, c.cmd)
		if !errors.Is(res[0].Err, fsm.ErrInvalidCommand) || f.LastMessage() != last {
			t.Fatalf("%s: apply: got %v (last %d), want a rejection that changes nothing", c.name, res[0].Err, f.LastMessage())
		}
	}
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		if !isOpen(t, f, c) {
			t.Fatalf("%s closed by a rejected command", c)
		}
	}
}

func TestUserGroupTTLExpiresAtTheEntryStamp(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	sec := int64(time.Second)
	f.mustApply(t0, fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g", User: "u", TTL: 10}))
	if at, ok, err := f.UserGroupExpiry(hub, "g", "u"); err != nil || !ok || at != t0+10*sec {
		t.Fatalf("UserGroupExpiry: got %d, %v, %v, want %d", at, ok, err, t0+10*sec)
	}
	if at, ok, err := f.NextGroupExpiry(); err != nil || !ok || at != t0+10*sec {
		t.Fatalf("NextGroupExpiry: got %d, %v, %v, want %d", at, ok, err, t0+10*sec)
	}
	f.mustApply(t0+10*sec-1, fsm.EncodeTick())
	if !isMember(t, f, "g", fsm.MemberUser, "u") {
		t.Fatalf("expired before its time")
	}
	// The entry stamped at the expiry removes it before its own commands.
	res := f.mustApply(t0+10*sec, publish(fsm.ToGroups, "g"))
	if isMember(t, f, "g", fsm.MemberUser, "u") {
		t.Fatalf("still a member at the expiry")
	}
	if _, ok, _ := f.NextGroupExpiry(); ok {
		t.Fatalf("NextGroupExpiry after the expiry: still one")
	}
	if res[0].Index == 0 {
		t.Fatalf("the publish in the expiring entry was not appended")
	}
	// A stamp that goes back (a new leader's clock) expires nothing early.
	f.mustApply(t0, fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g", User: "u", TTL: 5}))
	f.mustApply(t0-100*sec, fsm.EncodeTick())
	if !isMember(t, f, "g", fsm.MemberUser, "u") {
		t.Fatalf("expired by an earlier stamp")
	}
}

func TestUserGroupTTLEndsOrIsReplaced(t *testing.T) {
	sec := int64(time.Second)
	ttl := func(group, user string, s uint64) fsm.Command {
		return fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: group, User: user, TTL: s})
	}
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, ttl("again", "u", 10), ttl("removed", "u", 10), ttl("longer", "u", 10), ttl("all1", "v", 10), ttl("all2", "v", 10))
	f.mustApply(t0+sec,
		join("again", fsm.MemberUser, "u"), // added again without a ttl: for good
		leave("removed", fsm.MemberUser, "u"), join("removed", fsm.MemberUser, "u"),
		ttl("longer", "u", 100), // replaced
	)
	// Leaving every group ends every expiry of the user.
	f.mustApply(t0+2*sec, leave("", fsm.MemberUser, "v"), join("all1", fsm.MemberUser, "v"))
	f.mustApply(t0+50*sec, fsm.EncodeTick())
	for _, m := range []struct{ group, user string }{{"again", "u"}, {"removed", "u"}, {"longer", "u"}, {"all1", "v"}} {
		if !isMember(t, f, m.group, fsm.MemberUser, m.user) {
			t.Fatalf("%s in %s: expired, want still a member", m.user, m.group)
		}
	}
	if isMember(t, f, "all2", fsm.MemberUser, "v") {
		t.Fatalf("all2: left, want not a member")
	}
	if at, ok, _ := f.NextGroupExpiry(); !ok || at != t0+101*sec {
		t.Fatalf("NextGroupExpiry: got %d, %v, want %d (the replaced one)", at, ok, t0+101*sec)
	}
	f.mustApply(t0+101*sec, fsm.EncodeTick())
	if isMember(t, f, "longer", fsm.MemberUser, "u") {
		t.Fatalf("longer: still a member after its replaced expiry")
	}
}

func TestUserGroupTTLZeroAddsTheOpenConnections(t *testing.T) {
	f := execFixture(t)
	f.mustApply(t0, fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "now", User: "alice"}))
	if isMember(t, f, "now", fsm.MemberUser, "alice") {
		t.Fatalf("ttl 0 added the user itself")
	}
	for _, c := range []string{"c1", "c3"} {
		if !isMember(t, f, "now", fsm.MemberConnection, c) {
			t.Fatalf("%s: alice's open connection was not added", c)
		}
	}
	// A connection alice opens later is not in the group.
	f.mustApply(t0, connOpen("c5", "alice", "n1"))
	if isMember(t, f, "now", fsm.MemberConnection, "c5") {
		t.Fatalf("a later connection is in the group")
	}
}

func TestGroupConnectionsPages(t *testing.T) {
	f := execFixture(t)
	f.mustApply(t0, join("g1", fsm.MemberConnection, "c1"), join("g1", fsm.MemberUser, "nobody-connected"),
		connOpen("c0", "", "n1"), join("g1", fsm.MemberConnection, "c0"), connClose("c0"))
	want := []fsm.GroupConnection{{ConnID: "c1", UserID: "alice"}, {ConnID: "c2", UserID: "bob"}, {ConnID: "c3", UserID: "alice"}}
	var got []fsm.GroupConnection
	after := ""
	for pages := 0; ; pages++ {
		page, more, err := f.GroupConnections(hub, "g1", after, 2)
		if err != nil || pages > 3 {
			t.Fatalf("GroupConnections: %v after %d pages", err, pages)
		}
		got = append(got, page...)
		if !more {
			break
		}
		after = page[len(page)-1].ConnID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("GroupConnections: got %v, want %v", got, want)
	}
	if page, more, err := f.GroupConnections(hub, "empty", "", 10); err != nil || len(page) != 0 || more {
		t.Fatalf("an empty group: got %v, %v, %v", page, more, err)
	}
}

// BenchmarkExecuteFilter applies an :execute whose filter is evaluated on
// each of 10,000 connections of a hub, a tenth of them in the group it
// selects, and which sends one message to those.
func BenchmarkExecuteFilter(b *testing.B) {
	f := newTestFSM(b, fsm.Config{})
	var cmds []fsm.Command
	for i := range 10_000 {
		id := fmt.Sprintf("c%05d", i)
		cmds = append(cmds, connOpen(id, fmt.Sprintf("u%d", i%500), "n1"))
		if i%10 == 0 {
			cmds = append(cmds, join("vip", fsm.MemberConnection, id))
		}
	}
	f.mustApply(t0, cmds...)
	x := fsm.EncodeExecute(&fsm.Execute{Hub: hub, Filter: "'vip' in groups and userId ne 'u0'", Actions: []fsm.ExecAction{sendAction("t")}})
	b.ResetTimer()
	for range b.N {
		if res := f.mustApply(t0, x); res[0].Index == 0 {
			b.Fatal("nothing sent")
		}
	}
}

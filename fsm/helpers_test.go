package fsm_test

import (
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
)

// t0 is the proposer stamp the tests start their entries at.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()

// hub is the hub most tests publish to.
const hub = "chat"

// testFSM is an FSM fed hand-built Raft entries, with no Raft: each entry
// gets the next Raft index.
type testFSM struct {
	*fsmtest.Applier
	tb testing.TB
}

// newTestFSM opens an FSM in a fresh temporary directory (unless cfg.Dir is
// set) and closes it when the test ends.
func newTestFSM(tb testing.TB, cfg fsm.Config) *testFSM {
	tb.Helper()
	return &testFSM{Applier: fsmtest.Open(tb, cfg), tb: tb}
}

// apply applies one command entry stamped ts and returns its results.
// Every result must name the entry that carried it (Result.Entry); apply
// checks that and clears it, so tests compare the rest of the result.
func (tf *testFSM) apply(ts int64, cmds ...fsm.Command) []fsm.Result {
	tf.tb.Helper()
	l := tf.Entry(ts, cmds...)
	return stripEntries(tf.tb, l.Index, asResults(tf.tb, tf.Apply(l)))
}

func stripEntries(tb testing.TB, index uint64, res []fsm.Result) []fsm.Result {
	tb.Helper()
	for i := range res {
		if res[i].Entry != index {
			tb.Fatalf("result %d: got Entry %d, want the entry's Raft index %d", i, res[i].Entry, index)
		}
		res[i].Entry = 0
	}
	return res
}

// mustApply is apply that fails the test if any command is rejected.
func (tf *testFSM) mustApply(ts int64, cmds ...fsm.Command) []fsm.Result {
	tf.tb.Helper()
	res := tf.apply(ts, cmds...)
	for i, r := range res {
		if r.Err != nil {
			tf.tb.Fatalf("command %d: got error %v, want nil", i, r.Err)
		}
	}
	return res
}

// read is Read that fails the test on error.
func (tf *testFSM) read(r *fsm.Filter, after uint64, limit int) fsm.Page {
	tf.tb.Helper()
	page, err := tf.Read(r, after, limit)
	if err != nil {
		tf.tb.Fatalf("Read(after %d, limit %d): got error %v, want nil", after, limit, err)
	}
	return page
}

// readAll pages through everything addressed to r after the cursor, limit
// at a time, following Next until it reaches LastMessage, and returns the
// indexes read. It fails the test if the cursor ever moves backwards or
// stalls.
func (tf *testFSM) readAll(r *fsm.Filter, after uint64, limit int) []uint64 {
	tf.tb.Helper()
	var got []uint64
	for after < tf.LastMessage() {
		page := tf.read(r, after, limit)
		if page.Next <= after {
			tf.tb.Fatalf("Read(after %d): got Next %d, want > %d", after, page.Next, after)
		}
		got = append(got, indexesOf(page.Messages)...)
		after = page.Next
	}
	return got
}

// asResults type-asserts an Apply response for a command entry.
func asResults(tb testing.TB, resp interface{}) []fsm.Result {
	tb.Helper()
	res, ok := resp.([]fsm.Result)
	if !ok {
		tb.Fatalf("Apply response: got %T (%v), want []fsm.Result", resp, resp)
	}
	return res
}

// publish encodes a publish to hub with a fixed target and arguments.
func publish(a fsm.Audience, names ...string) fsm.Command {
	return fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: a, Names: names, Target: "recv", Arguments: []byte(`["x"]`)})
}

// toAll encodes a broadcast to hub that skips the excluded connections.
func toAll(excluded ...string) fsm.Command {
	return fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Excluded: excluded, Target: "recv", Arguments: []byte(`["x"]`)})
}

// join and leave encode group membership changes in hub.
func join(group string, kind fsm.MemberKind, member string) fsm.Command {
	return fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: group, Kind: kind, Member: member}, true)
}

func leave(group string, kind fsm.MemberKind, member string) fsm.Command {
	return fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: group, Kind: kind, Member: member}, false)
}

// connOpen and connClose encode a connection's life cycle in hub.
func connOpen(conn, user, node string) fsm.Command {
	return fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: hub, ConnID: conn, UserID: user, NodeID: node})
}

func connClose(conn string) fsm.Command {
	return fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: conn, Reason: "gone"})
}

// repeat returns n copies of a command.
func repeat(c fsm.Command, n int) []fsm.Command {
	out := make([]fsm.Command, n)
	for i := range out {
		out[i] = c
	}
	return out
}

// indexesOf lists the index of each result or message.
func indexesOf[T fsm.Result | fsm.Message](list []T) []uint64 {
	out := make([]uint64, 0, len(list))
	for _, v := range list {
		switch v := any(v).(type) {
		case fsm.Result:
			out = append(out, v.Index)
		case fsm.Message:
			out = append(out, v.Index)
		}
	}
	return out
}

// span returns the indexes from..to inclusive.
func span(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// checkIndexes fails the test unless got equals want.
func checkIndexes(tb testing.TB, what string, got, want []uint64) {
	tb.Helper()
	if !slices.Equal(got, want) {
		tb.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// mustPanic runs fn and returns what it panicked with; it fails the test if
// fn returns normally.
func mustPanic(tb testing.TB, what string, fn func()) (recovered any) {
	tb.Helper()
	defer func() {
		recovered = recover()
		if recovered == nil {
			tb.Fatalf("%s: got no panic, want one", what)
		}
	}()
	fn()
	return nil
}

// mustStats returns f's Stats and the count and total size of the stored
// message records, failing the test on an error.
func mustStats(tb testing.TB, f *testFSM) (st fsm.Stats, n, size uint64) {
	tb.Helper()
	st, err := f.Stats()
	if err != nil {
		tb.Fatalf("Stats: got error %v, want nil", err)
	}
	if n, size, err = fsm.StoredMessages(f.FSM); err != nil {
		tb.Fatalf("StoredMessages: got error %v, want nil", err)
	}
	return st, n, size
}

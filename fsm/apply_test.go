package fsm_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/hashicorp/raft"
)

func TestApplyAssignsDenseIndexes(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	for want := uint64(1); want <= 3; want++ {
		res := f.mustApply(t0, publish(fsm.ToGroups, "g"))
		checkIndexes(t, "single publish", indexesOf(res), []uint64{want})
	}
	res := f.mustApply(t0, repeat(toAll(), 64)...)
	checkIndexes(t, "batch of 64", indexesOf(res), span(4, 67))

	// Commands other than publishes take no index, even between publishes.
	res = f.mustApply(t0, publish(fsm.ToUsers, "u"), join("g", fsm.MemberUser, "u"), publish(fsm.ToConnections, "c"))
	checkIndexes(t, "mixed entry", indexesOf(res), []uint64{68, 0, 69})

	if got := f.LastMessage(); got != 69 {
		t.Fatalf("LastMessage: got %d, want 69", got)
	}
	if got := f.FirstMessage(); got != 1 {
		t.Fatalf("FirstMessage: got %d, want 1", got)
	}
	if got := f.AppliedIndex(); got != f.Index {
		t.Fatalf("AppliedIndex: got %d, want %d", got, f.Index)
	}
	checkIndexes(t, "read back", f.readAll(&fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g"},
		Users: []string{"u"}, Connections: []string{"c"}}, 0, 1000), span(1, 69))
}

func TestApplyBatchOfSeveralLogs(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	first := f.Entry(t0, publish(fsm.ToGroups, "g"), toAll())
	noop := f.Log(raft.LogNoop, nil)
	logs := []*raft.Log{first, noop, f.Entry(t0, repeat(toAll(), 3)...), f.Entry(t0, join("g", fsm.MemberConnection, "c1"))}
	resps := f.ApplyBatch(logs)
	if len(resps) != len(logs) {
		t.Fatalf("responses: got %d, want %d", len(resps), len(logs))
	}
	checkIndexes(t, "log 1", indexesOf(asResults(t, resps[0])), []uint64{1, 2})
	if resps[1] != nil {
		t.Fatalf("no-op response: got %v, want nil", resps[1])
	}
	checkIndexes(t, "log 3", indexesOf(asResults(t, resps[2])), []uint64{3, 4, 5})
	if got := stripEntries(t, logs[3].Index, asResults(t, resps[3])); len(got) != 1 || got[0] != (fsm.Result{}) {
		t.Fatalf("log 4: got %v, want [{}]", got)
	}
	if got := f.AppliedIndex(); got != 4 {
		t.Fatalf("AppliedIndex: got %d, want 4", got)
	}
	if ok, err := f.IsMember(hub, "g", fsm.MemberConnection, "c1"); err != nil || !ok {
		t.Fatalf("IsMember: got %v, %v, want true, nil", ok, err)
	}
	res := f.mustApply(t0, toAll())
	checkIndexes(t, "after the batch", indexesOf(res), []uint64{6})
}

func TestApplyNonCommandLogs(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll())
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogConfiguration, raft.LogBarrier} {
		changed := f.Changed()
		// The data is not ours to decode: garbage must not matter.
		resp := f.Apply(f.Log(typ, []byte{0xde, 0xad}))
		if resp != nil {
			t.Fatalf("%v: response: got %v, want nil", typ, resp)
		}
		if got := f.AppliedIndex(); got != f.Index {
			t.Fatalf("%v: AppliedIndex: got %d, want %d", typ, got, f.Index)
		}
		if got := f.LastMessage(); got != 1 {
			t.Fatalf("%v: LastMessage: got %d, want 1", typ, got)
		}
		select {
		case <-changed:
		default:
			t.Fatalf("%v: Changed channel: got open, want closed", typ)
		}
	}
	checkIndexes(t, "next publish", indexesOf(f.mustApply(t0, toAll())), []uint64{2})
}

func TestApplySkipsAppliedEntries(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	var logs []*raft.Log
	for range 3 {
		logs = append(logs, f.Entry(t0, toAll()))
	}
	f.ApplyBatch(logs)
	for _, l := range []*raft.Log{logs[2], logs[0], {Index: 2, Term: 1, Type: raft.LogNoop}} {
		if resp := f.Apply(l); resp != nil {
			t.Fatalf("re-applied entry %d: got %v, want nil", l.Index, resp)
		}
	}
	if got := f.LastMessage(); got != 3 {
		t.Fatalf("LastMessage after re-applying: got %d, want 3", got)
	}
	if got := f.AppliedIndex(); got != 3 {
		t.Fatalf("AppliedIndex after re-applying: got %d, want 3", got)
	}
	// A batch that overlaps what is applied applies only the new part.
	resps := f.ApplyBatch([]*raft.Log{logs[1], logs[2], f.Entry(t0, toAll())})
	if resps[0] != nil || resps[1] != nil {
		t.Fatalf("overlapping batch: got %v, want nil for the applied entries", resps[:2])
	}
	checkIndexes(t, "new entry of the batch", indexesOf(asResults(t, resps[2])), []uint64{4})
}

func TestApplyRejectsInvalidPublish(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	valid := fsm.Publish{Hub: hub, Audience: fsm.ToGroups, Names: []string{"g"}, Target: "recv", Arguments: []byte("[]")}
	tooMany := make([]string, fsm.MaxNamesPerSend+1)
	for i := range tooMany {
		tooMany[i] = "n"
	}
	for _, c := range []struct {
		name   string
		change func(p *fsm.Publish)
	}{
		{"empty hub", func(p *fsm.Publish) { p.Hub = "" }},
		{"hub starting with a digit", func(p *fsm.Publish) { p.Hub = "1chat" }},
		{"hub with a dash", func(p *fsm.Publish) { p.Hub = "a-b" }},
		{"hub too long", func(p *fsm.Publish) { p.Hub = strings.Repeat("h", fsm.MaxHubNameLen+1) }},
		{"empty target", func(p *fsm.Publish) { p.Target = "" }},
		{"target too long", func(p *fsm.Publish) { p.Target = strings.Repeat("t", fsm.MaxTargetLen+1) }},
		{"groups without names", func(p *fsm.Publish) { p.Names = nil }},
		{"users without names", func(p *fsm.Publish) { p.Audience, p.Names = fsm.ToUsers, nil }},
		{"connections without names", func(p *fsm.Publish) { p.Audience, p.Names = fsm.ToConnections, nil }},
		{"all with names", func(p *fsm.Publish) { p.Audience = fsm.ToAll }},
		{"audience 0", func(p *fsm.Publish) { p.Audience = 0 }},
		{"audience 5", func(p *fsm.Publish) { p.Audience = 5 }},
		{"empty group name", func(p *fsm.Publish) { p.Names = []string{"g", ""} }},
		{"group name not UTF-8", func(p *fsm.Publish) { p.Names = []string{"\xff"} }},
		{"group name too long", func(p *fsm.Publish) { p.Names = []string{strings.Repeat("é", fsm.MaxGroupNameLen+1)} }},
		{"too many names", func(p *fsm.Publish) { p.Names = tooMany }},
		{"empty excluded connection", func(p *fsm.Publish) { p.Excluded = []string{""} }},
		{"rejected with a key", func(p *fsm.Publish) { p.Target, p.IdempotencyKey = "", "key-1" }},
	} {
		bad := valid
		c.change(&bad)
		before := f.LastMessage()
		res := f.apply(t0, fsm.EncodePublish(&valid), fsm.EncodePublish(&bad), fsm.EncodePublish(&valid))
		if !errors.Is(res[1].Err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: got error %v, want one wrapping %v", c.name, res[1].Err, fsm.ErrInvalidCommand)
		}
		if res[1].Index != 0 || res[1].Duplicate {
			t.Fatalf("%s: got index %d duplicate %v, want 0 false", c.name, res[1].Index, res[1].Duplicate)
		}
		if res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("%s: valid neighbours: got errors %v, %v, want nil", c.name, res[0].Err, res[2].Err)
		}
		checkIndexes(t, c.name, indexesOf(res), []uint64{before + 1, 0, before + 2})
	}
	// The rejected publish's key was not remembered.
	keyed := valid
	keyed.IdempotencyKey = "key-1"
	if res := f.mustApply(t0, fsm.EncodePublish(&keyed)); res[0].Duplicate {
		t.Fatalf("key of a rejected publish: got duplicate of %d, want a new message", res[0].Index)
	}
}

func TestApplyRejectsInvalidMembershipAndConnection(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	for _, c := range []struct {
		name string
		cmd  fsm.Command
	}{
		{"add to empty group", join("", fsm.MemberUser, "u")},
		{"add empty member", join("g", fsm.MemberUser, "")},
		{"add kind 0", join("g", 0, "u")},
		{"remove kind 3", leave("g", 3, "u")},
		{"add in bad hub", fsm.EncodeMembership(&fsm.Membership{Hub: "_h", Group: "g", Kind: fsm.MemberUser, Member: "u"}, true)},
		{"add to group not UTF-8", join("\xfe", fsm.MemberUser, "u")},
		{"open in bad hub", fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "", ConnID: "c"})},
		{"open without id", connOpen("", "u", "n")},
		{"open with id not UTF-8", connOpen("\xff", "u", "n")},
	} {
		res := f.apply(t0, c.cmd)
		if !errors.Is(res[0].Err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: got error %v, want one wrapping %v", c.name, res[0].Err, fsm.ErrInvalidCommand)
		}
	}
	if groups, err := f.GroupsOf(hub, fsm.MemberUser, "u"); err != nil || len(groups) != 0 {
		t.Fatalf("GroupsOf: got %v, %v, want none", groups, err)
	}
	if st, err := f.Stats(); err != nil || st.Connections != 0 {
		t.Fatalf("Stats().Connections: got %d, %v, want 0", st.Connections, err)
	}
}

func TestApplyUnknownOptionalCommand(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	unknown := fsm.Command{byte(fsm.IgnoreUnknownFlag | 0x7f), 1, 2, 3}
	res := f.apply(t0, toAll(), unknown, toAll())
	if !errors.Is(res[1].Err, fsm.ErrUnknownCommand) {
		t.Fatalf("unknown optional command: got error %v, want one wrapping %v", res[1].Err, fsm.ErrUnknownCommand)
	}
	checkIndexes(t, "around it", indexesOf(res), []uint64{1, 0, 2})
	if got := f.AppliedIndex(); got != 1 {
		t.Fatalf("AppliedIndex: got %d, want 1", got)
	}
	// A command this version knows is applied even when marked optional.
	optional := toAll()
	optional[0] |= byte(fsm.IgnoreUnknownFlag)
	checkIndexes(t, "known optional publish", indexesOf(f.mustApply(t0, optional)), []uint64{3})
}

// TestApplyRejectsUndecodable checks the contract that keeps one bad entry
// from stopping the cluster: an entry that cannot be split into commands
// answers an error, and a command that cannot be decoded, of an unknown
// type or invalid, is rejected in its Result; neither panics, neither
// changes anything but the applied index, and valid neighbours apply.
func TestApplyRejectsUndecodable(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll(), join("g", fsm.MemberUser, "u"))
	valid := fsm.EncodeEntry(t0, []fsm.Command{toAll()})
	checkUnchanged := func(name string, last uint64) {
		t.Helper()
		if got := f.AppliedIndex(); got != f.Index {
			t.Fatalf("%s: AppliedIndex: got %d, want %d", name, got, f.Index)
		}
		if got := f.LastMessage(); got != last {
			t.Fatalf("%s: LastMessage: got %d, want %d", name, got, last)
		}
		if ok, err := f.IsMember(hub, "g", fsm.MemberUser, "u"); err != nil || !ok {
			t.Fatalf("%s: IsMember: got %v, %v, want true, nil", name, ok, err)
		}
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not an entry at all")},
		{"empty data", nil},
		{"wrong version", append([]byte{9}, valid[1:]...)},
		{"truncated", valid[:len(valid)-2]},
		{"no commands", fsm.EncodeEntry(t0, nil)},
		{"the 3-byte apply body", []byte{1, 1, 0x7f}},
	} {
		resp := f.Apply(f.Log(raft.LogCommand, c.data))
		err, ok := resp.(error)
		if !ok || !errors.Is(err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: Apply response: got %T (%v), want an error wrapping %v", c.name, resp, resp, fsm.ErrInvalidCommand)
		}
		checkUnchanged(c.name, 1)
	}
	last := uint64(1)
	for _, c := range []struct {
		name string
		cmd  fsm.Command
	}{
		{"unknown type", fsm.Command{0x7f, 0}},
		{"type 0", fsm.Command{0}},
		{"corrupt publish", fsm.Command{byte(fsm.CmdPublish), 0xff}},
		{"publish with trailing bytes", append(toAll(), 0)},
		{"corrupt membership", leave("g", fsm.MemberUser, "u")[:4]},
		{"corrupt connection", fsm.Command{byte(fsm.CmdConnClose), 3}},
		{"close without connection id", connClose("")},
		{"corrupt node info", fsm.Command{byte(fsm.CmdNodeInfo), 1}},
		{"corrupt node remove", append(fsm.EncodeNodeRemove("n"), 1)},
		{"node remove without id", fsm.EncodeNodeRemove("")},
		{"corrupt checkpoints", fsm.Command{byte(fsm.CmdCheckpoint), 0, 5}},
		{"stateful open without token", fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "s", Protocol: "json"})},
		{"stateful open with a 40 KB token hash", fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "s", Protocol: "json", TokenHash: make([]byte, 40<<10)})},
		{"invocation carrying node info", fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s", ClientSeq: 1, Inner: fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n"})})},
		{"invocation carrying a corrupt publish", fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s", ClientSeq: 1, Inner: fsm.Command{byte(fsm.CmdPublish), 0xff}})},
	} {
		if err := fsm.ValidateCommand(c.cmd); !errors.Is(err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: ValidateCommand: got %v, want an error wrapping %v", c.name, err, fsm.ErrInvalidCommand)
		}
		alone := f.apply(t0, c.cmd)
		if !errors.Is(alone[0].Err, fsm.ErrInvalidCommand) {
			t.Fatalf("%s: got error %v, want one wrapping %v", c.name, alone[0].Err, fsm.ErrInvalidCommand)
		}
		checkUnchanged(c.name+" alone", last)
		res := f.apply(t0, toAll(), c.cmd, toAll())
		if !errors.Is(res[1].Err, fsm.ErrInvalidCommand) || res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("%s between publishes: got errors %v, %v, %v, want only the middle one", c.name, res[0].Err, res[1].Err, res[2].Err)
		}
		checkIndexes(t, c.name+" neighbours", indexesOf(res), []uint64{last + 1, 0, last + 2})
		last += 2
		checkUnchanged(c.name+" between publishes", last)
	}
	if st, err := f.Stats(); err != nil || st.Connections != 0 {
		t.Fatalf("Stats().Connections: got %d, %v, want 0", st.Connections, err)
	}
	// The store still follows the log.
	checkIndexes(t, "next publish", indexesOf(f.mustApply(t0, toAll())), []uint64{last + 1})
}

// TestValidateCommandAcceptsWhatApplyAccepts: every command the project
// encodes passes the edge's check.
func TestValidateCommandAcceptsWhatApplyAccepts(t *testing.T) {
	for i, c := range everyCommand() {
		if err := fsm.ValidateCommand(c); err != nil {
			t.Fatalf("command %d (%s): ValidateCommand: got %v, want nil", i, c.Type(), err)
		}
	}
}

func TestApplyAfterClosePanics(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	if err := f.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
	mustPanic(t, "apply after close", func() { f.Apply(f.Entry(t0, toAll())) })
	if _, err := f.Read(&fsm.Filter{Hub: hub, Broadcast: true}, 0, 10); err == nil {
		t.Fatalf("Read after Close: got nil error, want one")
	}
}

func TestApplyNodes(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	n1 := fsm.NodeInfo{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001"}
	n2 := fsm.NodeInfo{ID: "n2", RaftAddr: "127.0.0.1:7002", HTTPAddr: "127.0.0.1:8002"}
	f.mustApply(t0, fsm.EncodeNodeInfo(&n2), fsm.EncodeNodeInfo(&n1))
	nodes, err := f.Nodes()
	if err != nil || len(nodes) != 2 || nodes[0] != n1 || nodes[1] != n2 {
		t.Fatalf("Nodes: got %v, %v, want [%v %v]", nodes, err, n1, n2)
	}
	moved := fsm.NodeInfo{ID: "n1", RaftAddr: "127.0.0.2:7001", HTTPAddr: "127.0.0.2:8001"}
	f.mustApply(t0, fsm.EncodeNodeInfo(&moved), fsm.EncodeNodeRemove("n2"), fsm.EncodeNodeRemove("n9"))
	if got, ok, err := f.Node("n1"); err != nil || !ok || got != moved {
		t.Fatalf("Node(n1): got %v, %v, %v, want %v, true, nil", got, ok, err, moved)
	}
	if got, ok, err := f.Node("n2"); err != nil || ok {
		t.Fatalf("Node(n2) after removal: got %v, %v, %v, want not found", got, ok, err)
	}
	if nodes, err := f.Nodes(); err != nil || len(nodes) != 1 {
		t.Fatalf("Nodes after removal: got %v, %v, want [%v]", nodes, err, moved)
	}
	// A record whose id cannot be a store key is rejected, not a store
	// failure that would stop every replica.
	for _, id := range []string{"", strings.Repeat("n", 40_000)} {
		res := f.apply(t0, fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: id, RaftAddr: "x:1"}))
		if !errors.Is(res[0].Err, fsm.ErrInvalidCommand) {
			t.Fatalf("node info with a %d-byte id: got error %v, want one wrapping %v", len(id), res[0].Err, fsm.ErrInvalidCommand)
		}
	}
	if nodes, err := f.Nodes(); err != nil || len(nodes) != 1 {
		t.Fatalf("Nodes after rejected records: got %v, %v, want [%v]", nodes, err, moved)
	}
}

// TestApplyAcceptsLimits checks that names at the documented limits pass, so
// a command the edge accepted is never rejected on apply.
func TestApplyAcceptsLimits(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	names := make([]string, fsm.MaxNamesPerSend)
	for i := range names {
		names[i] = strings.Repeat("é", fsm.MaxGroupNameLen) // 1024 characters, 2048 bytes
	}
	for _, p := range []fsm.Publish{
		{Hub: "h" + strings.Repeat("_9", (fsm.MaxHubNameLen-2)/2) + "Z", Audience: fsm.ToAll, Target: "t"},
		{Hub: hub, Audience: fsm.ToGroups, Names: names, Excluded: names[:1], Target: strings.Repeat("t", fsm.MaxTargetLen)},
		{Hub: hub, Audience: fsm.ToUsers, Names: []string{strings.Repeat("ü", fsm.MaxNameLen)}, Target: "t"},
		{Hub: hub, Audience: fsm.ToAll, Target: "t", IdempotencyKey: strings.Repeat("k", fsm.MaxIdempotencyKeyLen)},
	} {
		if res := f.apply(t0, fsm.EncodePublish(&p)); res[0].Err != nil {
			t.Fatalf("publish at the limits (hub of %d bytes): got error %v, want nil", len(p.Hub), res[0].Err)
		}
	}
	long := strings.Repeat("ü", fsm.MaxNameLen)
	f.mustApply(t0, join(strings.Repeat("é", fsm.MaxGroupNameLen), fsm.MemberUser, long), connOpen(long, long, "n"))
	checkUser(t, f, long, true)
}

// TestApplyBatchingDoesNotMatter checks that replicas agree whatever runs of
// entries Raft hands them: one at a time, or in batches.
func TestApplyBatchingDoesNotMatter(t *testing.T) {
	cfg := fsm.Config{Retention: fsm.Retention{MaxMessages: 60, MaxAge: time.Minute}, IdempotencyWindow: 5 * time.Second}
	type entry struct {
		ts   int64
		cmds []fsm.Command
	}
	var entries []entry
	for i := range 100 {
		ts := t0 + int64(i)*int64(time.Second)
		cmds := []fsm.Command{toAll("c1"), keyed(fmt.Sprint("k", i/3)), keyed(fmt.Sprint("c", i%7)), publish(fsm.ToGroups, "g1", "g2")}
		switch i % 4 {
		case 0:
			cmds = append(cmds, join("g1", fsm.MemberConnection, "c1"), connOpen("c1", "u1", "n1"))
		case 1:
			cmds = append(cmds, leave("", fsm.MemberConnection, "c1"), join("g2", fsm.MemberUser, "u1"))
		case 2:
			cmds = append(cmds, connClose("c1"), fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", RaftAddr: "r"}))
		}
		entries = append(entries, entry{ts, cmds})
	}
	single := newTestFSM(t, cfg)
	var want []fsm.Result
	for _, e := range entries {
		want = append(want, single.mustApply(e.ts, e.cmds...)...)
	}
	batched := newTestFSM(t, cfg)
	var got []fsm.Result
	for i := 0; i < len(entries); i += 7 {
		var logs []*raft.Log
		for _, e := range entries[i:min(i+7, len(entries))] {
			logs = append(logs, batched.Entry(e.ts, e.cmds...))
		}
		for j, resp := range batched.ApplyBatch(logs) {
			got = append(got, stripEntries(t, logs[j].Index, asResults(t, resp))...)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("results: got %v, want %v", got, want)
	}
	if dups := slices.IndexFunc(want, func(r fsm.Result) bool { return r.Duplicate }); dups < 0 {
		t.Fatalf("duplicates: got none, want the keys to repeat within the window")
	}
	checkSameState(t, batched, single)
}

// ObserveApply hears, for every applied command entry, the time since the
// proposer stamped it.
func TestObserveApplyTimesEachEntryFromItsStamp(t *testing.T) {
	var delays []time.Duration
	tf := newTestFSM(t, fsm.Config{ObserveApply: func(d time.Duration) { delays = append(delays, d) }})
	now := time.Now()
	stamps := []time.Time{now.Add(-2 * time.Second), now.Add(-50 * time.Millisecond)}
	batch := []*raft.Log{tf.Entry(stamps[0].UnixNano(), toAll()), tf.Entry(stamps[1].UnixNano(), toAll(), toAll())}
	tf.ApplyBatch(batch)
	after := time.Now()
	if len(delays) != len(stamps) {
		t.Fatalf("got %d observations, want one per entry (%d)", len(delays), len(stamps))
	}
	for i, st := range stamps {
		if lo, hi := now.Sub(st), after.Sub(st); delays[i] < lo || delays[i] > hi {
			t.Errorf("entry %d: got delay %s, want between %s and %s", i, delays[i], lo, hi)
		}
	}
}

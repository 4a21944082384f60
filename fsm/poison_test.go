package fsm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/backplane/backplane/fsm"
	"github.com/hashicorp/raft"
)

// everyCommand returns one valid command of every type the project writes.
func everyCommand() []fsm.Command {
	token := bytes.Repeat([]byte{7}, 32)
	return []fsm.Command{
		fsm.EncodeClusterLevel(fsm.Level), // first: what follows may need it
		toAll("c2"),
		publish(fsm.ToGroups, "g1"),
		publish(fsm.ToUsers, "u1"),
		publish(fsm.ToConnections, "c1"),
		keyed("k1"),
		fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`["AQI="]`), MsgpackArguments: []byte{0x91, 0xc4, 0x02, 0x01, 0x02}}),
		join("g1", fsm.MemberConnection, "c1"),
		join("g1", fsm.MemberUser, "u1"),
		leave("g1", fsm.MemberUser, "u1"),
		leave("", fsm.MemberConnection, "c2"),
		connOpen("c1", "u1", "n1"),
		connClose("c2"),
		fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: hub, ConnID: "c3", Reason: "expired"}),
		fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", RaftAddr: "127.0.0.1:7000", HTTPAddr: "127.0.0.1:8080"}),
		fsm.EncodeNodeRemove("n2"),
		fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "s1", UserID: "u1", NodeID: "n1", Protocol: "json", TokenHash: token}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "1", ClientSeq: 1, Inner: toAll()}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "2", ClientSeq: 2, Inner: join("g1", fsm.MemberConnection, "s1")}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", ClientSeq: 3, Error: "refused"}),
		fsm.EncodeCheckpoints("n1", []fsm.Checkpoint{{Hub: hub, ConnID: "s1", Seq: 1, Pos: fsm.Position{Msg: 1, Order: 1}}}),
		fsm.EncodeExecute(&fsm.Execute{Hub: hub, Filter: "'g1' in groups or userId eq 'u1'", Excluded: []string{"c2"}, Actions: []fsm.ExecAction{
			{Kind: fsm.ExecSend, Target: "recv", Arguments: []byte(`["x"]`)}, {Kind: fsm.ExecJoin, Group: "g2"},
			{Kind: fsm.ExecLeave, Group: "g1"}, {Kind: fsm.ExecClose, Reason: "bye"}}}),
		fsm.EncodeExecute(&fsm.Execute{Hub: hub, Group: "g1", Actions: []fsm.ExecAction{{Kind: fsm.ExecClose}}}),
		fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g3", User: "u1", TTL: 5}),
		fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub, Group: "g4", User: "u1"}),
		fsm.EncodeTick(),
		fsm.EncodePublish(&fsm.Publish{Hub: "chat-room", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "4", ClientSeq: 4, AppValue: fsm.AppValue{HasValue: true, ValueFormat: 1, Value: []byte(`{"r":1}`)}}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "st", AppValue: fsm.AppValue{Item: true, HasValue: true, ValueFormat: 1, Value: []byte(`1`)}}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "st", AppValue: fsm.AppValue{StreamEnd: true}}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "st2", ClientSeq: 5, AppValue: fsm.AppValue{StreamStart: true}}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "s1", InvocationID: "rest-1", AppValue: fsm.AppValue{Call: true, Target: "ask", HasValue: true, ValueFormat: 1, Value: []byte(`[1]`)}}),
	}
}

// TestEveryCommandTypeIsCovered keeps everyCommand honest: a new command
// type must be added to it, so the fuzz seeds and the edge check cover it.
func TestEveryCommandTypeIsCovered(t *testing.T) {
	seen := map[fsm.CommandType]bool{}
	for _, c := range everyCommand() {
		seen[c.Type()&^fsm.IgnoreUnknownFlag] = true
	}
	for typ := fsm.CommandType(1); typ < fsm.IgnoreUnknownFlag; typ++ {
		known := typ.String() != fmt.Sprintf("unknown(%d)", byte(typ))
		if known && !seen[typ] {
			t.Fatalf("command type %d (%s) has no example in everyCommand", typ, typ)
		}
	}
}

// splitEntries reads fuzz input as a run of entries, each prefixed by its
// uvarint length; a prefix that does not fit makes the rest one entry.
func splitEntries(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 && len(out) < 64 {
		n, w := binary.Uvarint(data)
		if w <= 0 || n > uint64(len(data)-w) {
			return append(out, data)
		}
		out = append(out, data[w:w+int(n)])
		data = data[w+int(n):]
	}
	return out
}

func joinEntries(entries ...[]byte) []byte {
	var out []byte
	for _, e := range entries {
		out = binary.AppendUvarint(out, uint64(len(e)))
		out = append(out, e...)
	}
	return out
}

// FuzzApplyTwoReplicas feeds random entries to two replicas, one applying
// them in one batch and one entry by entry: neither may panic, and both
// must end with byte-for-byte the same store, still able to follow the log.
func FuzzApplyTwoReplicas(f *testing.F) {
	all := everyCommand()
	f.Add([]byte{1, 1, 0x7f})
	f.Add(joinEntries(fsm.EncodeEntry(t0, all)))
	for i, c := range all {
		f.Add(joinEntries(fsm.EncodeEntry(t0+int64(i), []fsm.Command{c}), fsm.EncodeEntry(t0, all[:i+1]), []byte{1, 1, 0x7f}))
		f.Add(joinEntries(fsm.EncodeEntry(t0, []fsm.Command{c[:len(c)/2]})))
	}
	cfg := fsm.Config{Retention: fsm.Retention{MaxMessages: 8}}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries := splitEntries(data)
		if len(entries) == 0 {
			return
		}
		batched, single := newTestFSM(t, cfg), newTestFSM(t, cfg)
		logs := make([]*raft.Log, len(entries))
		for i, e := range entries {
			logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: e}
		}
		batchedResp := batched.ApplyBatch(logs)
		for i, l := range logs {
			resp := single.Apply(l)
			if fmt.Sprint(resp) != fmt.Sprint(batchedResp[i]) {
				t.Fatalf("entry %d: one by one answered %v, in a batch %v", i+1, resp, batchedResp[i])
			}
		}
		batched.Index, single.Index = uint64(len(logs)), uint64(len(logs))
		checkSameStore(t, batched, single)
		for _, tf := range []*testFSM{batched, single} {
			last := tf.LastMessage()
			if res := tf.mustApply(t0, toAll()); res[0].Index != last+1 {
				t.Fatalf("publish after the fuzzed entries: got index %d, want %d", res[0].Index, last+1)
			}
		}
		checkSameStore(t, batched, single)
	})
}

func checkSameStore(t *testing.T, a, b *testFSM) {
	t.Helper()
	if a.AppliedIndex() != b.AppliedIndex() {
		t.Fatalf("AppliedIndex: %d and %d", a.AppliedIndex(), b.AppliedIndex())
	}
	da, err := fsm.DumpStore(a.FSM)
	if err != nil {
		t.Fatalf("DumpStore: %v", err)
	}
	db, err := fsm.DumpStore(b.FSM)
	if err != nil {
		t.Fatalf("DumpStore: %v", err)
	}
	if len(da) != len(db) {
		t.Fatalf("stores differ: %d and %d keys", len(da), len(db))
	}
	for i := range da {
		if !bytes.Equal(da[i][0], db[i][0]) || !bytes.Equal(da[i][1], db[i][1]) {
			t.Fatalf("stores differ at key %d: %q=%x and %q=%x", i, da[i][0], da[i][1], db[i][0], db[i][1])
		}
	}
}

package fsm_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// TestGoldenValues pins the numeric values that are part of the log format:
// renumbering any of them would make replicas misread old entries.
func TestGoldenValues(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want byte
	}{
		{"CmdPublish", byte(fsm.CmdPublish), 1},
		{"CmdGroupAdd", byte(fsm.CmdGroupAdd), 2},
		{"CmdGroupRemove", byte(fsm.CmdGroupRemove), 3},
		{"CmdConnOpen", byte(fsm.CmdConnOpen), 4},
		{"CmdConnClose", byte(fsm.CmdConnClose), 5},
		{"CmdConnExpire", byte(fsm.CmdConnExpire), 6},
		{"CmdNodeInfo", byte(fsm.CmdNodeInfo), 7},
		{"CmdNodeRemove", byte(fsm.CmdNodeRemove), 8},
		{"CmdInvocation", byte(fsm.CmdInvocation), 9},
		{"CmdCheckpoint", byte(fsm.CmdCheckpoint), 10},
		{"CmdStatefulOpen", byte(fsm.CmdStatefulOpen), 11},
		{"CmdExecute", byte(fsm.CmdExecute), 12},
		{"CmdUserGroupTTL", byte(fsm.CmdUserGroupTTL), 13},
		{"CmdTick", byte(fsm.CmdTick), 14},
		{"CmdClusterLevel", byte(fsm.CmdClusterLevel), 0x8f}, // 15, ignorable by versions that do not know it
		{"ExecSend", byte(fsm.ExecSend), 1},
		{"ExecJoin", byte(fsm.ExecJoin), 2},
		{"ExecLeave", byte(fsm.ExecLeave), 3},
		{"ExecClose", byte(fsm.ExecClose), 4},
		{"IgnoreUnknownFlag", byte(fsm.IgnoreUnknownFlag), 0x80},
		{"ToAll", byte(fsm.ToAll), 1},
		{"ToGroups", byte(fsm.ToGroups), 2},
		{"ToUsers", byte(fsm.ToUsers), 3},
		{"ToConnections", byte(fsm.ToConnections), 4},
		{"MemberConnection", byte(fsm.MemberConnection), 1},
		{"MemberUser", byte(fsm.MemberUser), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestGoldenEncoding pins the bytes of every command encoder and of an
// entry, so the log format cannot change by accident.
func TestGoldenEncoding(t *testing.T) {
	add := fsm.EncodeMembership(&fsm.Membership{Hub: "h", Group: "g", Kind: fsm.MemberUser, Member: "u"}, true)
	remove := fsm.EncodeNodeRemove("n1")
	for _, c := range []struct {
		name string
		got  []byte
		want string // hex
	}{
		{"EncodePublish", fsm.EncodePublish(&fsm.Publish{
			Hub: "chat", Audience: fsm.ToGroups, Names: []string{"g1", "g2"}, Excluded: []string{"c1"},
			Target: "recv", Arguments: []byte("[1]"), IdempotencyKey: "k",
		}), "01" + "0463686174" + "02" + "02" + "026731" + "026732" + "01" + "026331" +
			"0472656376" + "035b315d" + "016b"},
		{"EncodePublish empty lists", fsm.EncodePublish(&fsm.Publish{Hub: "h", Audience: fsm.ToAll, Target: "t"}),
			"01" + "0168" + "01" + "00" + "00" + "0174" + "00" + "00"},
		{"EncodePublish MessagePack arguments", fsm.EncodePublish(&fsm.Publish{Hub: "h", Audience: fsm.ToAll, Target: "t",
			Arguments: []byte("[1]"), MsgpackArguments: []byte{0x91, 0x01}}),
			"01" + "0168" + "01" + "00" + "00" + "0174" + "035b315d" + "00" + "029101"},
		{"EncodeMembership add", add, "02" + "0168" + "0167" + "02" + "0175"},
		{"EncodeMembership remove", fsm.EncodeMembership(&fsm.Membership{Hub: "h", Kind: fsm.MemberConnection, Member: "c"}, false),
			"03" + "0168" + "00" + "01" + "0163"},
		{"EncodeConnection", fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "h", ConnID: "c", UserID: "u", NodeID: "n"}),
			"04" + "0168" + "0163" + "0175" + "016e" + "00"},
		{"EncodeConnection close", fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: "h", ConnID: "c", Reason: "r"}),
			"05" + "0168" + "0163" + "00" + "00" + "0172"},
		{"EncodeConnection expire", fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: "h", ConnID: "c"}),
			"06" + "0168" + "0163" + "00" + "00" + "00"},
		{"EncodeNodeInfo", fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", RaftAddr: "r:1", HTTPAddr: "h:2"}),
			"07" + "026e31" + "03723a31" + "03683a32"},
		{"EncodeNodeRemove", remove, "08" + "026e31"},
		{"EncodeInvocation", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "i", ClientSeq: 300, Inner: remove}),
			"09" + "0168" + "0163" + "0169" + "ac02" + "00" + "04" + "08026e31"},
		{"EncodeInvocation failed", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", ClientSeq: 1, Error: "e"}),
			"09" + "0168" + "0163" + "00" + "01" + "0165" + "00"},
		{"EncodeCheckpoints", fsm.EncodeCheckpoints("n1", []fsm.Checkpoint{{Hub: "h", ConnID: "c", Seq: 5, Pos: fsm.Position{Msg: 1, Order: 2, Entry: 3, Off: 4}}}),
			"0a" + "026e31" + "01" + "0168" + "0163" + "05" + "15" + "0000000000000001" + "02" + "0000000000000003" + "00000004"},
		{"EncodeStatefulOpen", fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: "h", ConnID: "c", UserID: "u", NodeID: "n", Protocol: "json", TokenHash: []byte{0xab, 0xcd}}),
			"0b" + "0168" + "0163" + "0175" + "016e" + "046a736f6e" + "02abcd"},
		{"EncodeExecute", fsm.EncodeExecute(&fsm.Execute{Hub: "h", Group: "g", Excluded: []string{"c"}, Filter: "true", Actions: []fsm.ExecAction{
			{Kind: fsm.ExecSend, Target: "t", Arguments: []byte("[]")}, {Kind: fsm.ExecJoin, Group: "j"}, {Kind: fsm.ExecLeave, Group: "l"}, {Kind: fsm.ExecClose, Reason: "r"}}}),
			"0c" + "0168" + "0167" + "00" + "01" + "0163" + "0474727565" + "04" +
				"01" + "0174" + "025b5d" + "02" + "016a" + "03" + "016c" + "04" + "0172"},
		{"EncodeUserGroupTTL", fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: "h", Group: "g", User: "u", TTL: 300}),
			"0d" + "0168" + "0167" + "0175" + "ac02"},
		{"EncodeTick", fsm.EncodeTick(), "0e"},
		{"EncodeClusterLevel", fsm.EncodeClusterLevel(300), "8f" + "ac02"},
		// An application's values: a trailing part (flags, value format,
		// value, and a call's target) only when something is set.
		{"EncodeInvocation result", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "i", ClientSeq: 1,
			AppValue: fsm.AppValue{HasValue: true, ValueFormat: 1, Value: []byte("3")}}),
			"09" + "0168" + "0163" + "0169" + "01" + "00" + "00" + "01" + "01" + "0133"},
		{"EncodeInvocation stream item", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "s",
			AppValue: fsm.AppValue{HasValue: true, Item: true, ValueFormat: 2, Value: []byte{0x07}}}),
			"09" + "0168" + "0163" + "0173" + "00" + "00" + "00" + "03" + "02" + "0107"},
		{"EncodeInvocation stream end", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "s", Error: "e",
			AppValue: fsm.AppValue{StreamEnd: true}}),
			"09" + "0168" + "0163" + "0173" + "00" + "0165" + "00" + "04" + "00" + "00"},
		{"EncodeInvocation call", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "r",
			AppValue: fsm.AppValue{HasValue: true, Call: true, ValueFormat: 1, Value: []byte("[]"), Target: "t"}}),
			"09" + "0168" + "0163" + "0172" + "00" + "00" + "00" + "09" + "01" + "025b5d" + "0174"},
		{"EncodeInvocation stream start", fsm.EncodeInvocation(&fsm.Invocation{Hub: "h", ConnID: "c", InvocationID: "s", ClientSeq: 2,
			AppValue: fsm.AppValue{StreamStart: true}}),
			"09" + "0168" + "0163" + "0173" + "02" + "00" + "00" + "10" + "00" + "00"},
		{"EncodeNodeRemove long id", fsm.EncodeNodeRemove(strings.Repeat("x", 200)),
			"08" + "c801" + strings.Repeat("78", 200)},
		{"EncodeEntry", fsm.EncodeEntry(0x0102030405060708, []fsm.Command{remove, add}),
			"01" + "0102030405060708" + "02" + "04" + "08026e31" + "08" + "0201680167020175"},
		{"EncodeEntry negative stamp", fsm.EncodeEntry(-1, []fsm.Command{remove}),
			"01" + "ffffffffffffffff" + "01" + "04" + "08026e31"},
	} {
		if got := hex.EncodeToString(c.got); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestCommandType(t *testing.T) {
	for _, c := range []struct {
		cmd  fsm.Command
		want fsm.CommandType
	}{
		{publish(fsm.ToGroups, "g"), fsm.CmdPublish},
		{join("g", fsm.MemberUser, "u"), fsm.CmdGroupAdd},
		{leave("g", fsm.MemberUser, "u"), fsm.CmdGroupRemove},
		{connOpen("c", "u", "n"), fsm.CmdConnOpen},
		{connClose("c"), fsm.CmdConnClose},
		{fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: hub, ConnID: "c"}), fsm.CmdConnExpire},
		{fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n"}), fsm.CmdNodeInfo},
		{fsm.EncodeNodeRemove("n"), fsm.CmdNodeRemove},
		{fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "c", ClientSeq: 1}), fsm.CmdInvocation},
		{fsm.EncodeCheckpoints("n", nil), fsm.CmdCheckpoint},
		{fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "c"}), fsm.CmdStatefulOpen},
		{fsm.EncodeExecute(&fsm.Execute{Hub: hub}), fsm.CmdExecute},
		{fsm.EncodeUserGroupTTL(&fsm.UserGroupTTL{Hub: hub}), fsm.CmdUserGroupTTL},
		{fsm.EncodeTick(), fsm.CmdTick},
		{fsm.EncodeClusterLevel(1), fsm.CmdClusterLevel},
		{fsm.Command{}, 0},
	} {
		if got := c.cmd.Type(); got != c.want {
			t.Errorf("Type of %x: got %v, want %v", []byte(c.cmd), got, c.want)
		}
	}
	for _, c := range []struct{ got, want string }{
		{fsm.CmdPublish.String(), "publish"},
		{fsm.CmdNodeRemove.String(), "node-remove"},
		{fsm.CmdExecute.String(), "execute"},
		{fsm.CmdUserGroupTTL.String(), "user-group-ttl"},
		{fsm.CmdTick.String(), "tick"},
		{fsm.CmdClusterLevel.String(), "cluster-level"},
		{(fsm.CmdGroupAdd | fsm.IgnoreUnknownFlag).String(), "group-add"},
		{fsm.CommandType(0x7f).String(), "unknown(127)"},
		{fsm.ToUsers.String(), "users"},
		{fsm.Audience(9).String(), "audience(9)"},
	} {
		if c.got != c.want {
			t.Errorf("String: got %q, want %q", c.got, c.want)
		}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	big := fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "t", Arguments: bytes.Repeat([]byte("a"), 70_000)})
	for _, c := range []struct {
		name string
		ts   int64
		cmds []fsm.Command
	}{
		{"one", t0, []fsm.Command{publish(fsm.ToGroups, "g")}},
		{"zero stamp", 0, []fsm.Command{fsm.EncodeNodeRemove("n")}},
		{"negative stamp", -12345, []fsm.Command{connOpen("c", "", "n")}},
		{"max stamp", math.MaxInt64, []fsm.Command{join("g", fsm.MemberUser, "u")}},
		{"min stamp", math.MinInt64, []fsm.Command{join("g", fsm.MemberUser, "u")}},
		{"mixed", t0, []fsm.Command{publish(fsm.ToUsers, "u"), connClose("c"), big, fsm.Command{0xff}}},
		{"batch of 64", t0, repeat(toAll("c1"), 64)},
		{"batch of 300", t0, repeat(fsm.EncodeNodeRemove("n"), 300)},
	} {
		ts, cmds, err := fsm.DecodeEntry(fsm.EncodeEntry(c.ts, c.cmds))
		if err != nil {
			t.Fatalf("%s: DecodeEntry: got error %v, want nil", c.name, err)
		}
		if ts != c.ts {
			t.Errorf("%s: stamp: got %d, want %d", c.name, ts, c.ts)
		}
		if len(cmds) != len(c.cmds) {
			t.Fatalf("%s: commands: got %d, want %d", c.name, len(cmds), len(c.cmds))
		}
		for i := range cmds {
			if !bytes.Equal(cmds[i], c.cmds[i]) {
				t.Errorf("%s: command %d: got %x, want %x", c.name, i, []byte(cmds[i]), []byte(c.cmds[i]))
			}
		}
	}
}

func TestDecodeEntryRejectsCorrupt(t *testing.T) {
	valid := fsm.EncodeEntry(t0, []fsm.Command{publish(fsm.ToGroups, "g"), fsm.EncodeNodeRemove("n")})
	withVersion := func(v byte) []byte {
		b := bytes.Clone(valid)
		b[0] = v
		return b
	}
	header := valid[:9]
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"short header", valid[:5]},
		{"header only", header},
		{"version 0", withVersion(0)},
		{"version 2", withVersion(2)},
		{"no commands", fsm.EncodeEntry(t0, nil)},
		{"empty command", fsm.EncodeEntry(t0, []fsm.Command{{}})},
		{"count past the end", append(bytes.Clone(header), 5, 1, 0xff)},
		{"count overflows", append(bytes.Clone(header), bytes.Repeat([]byte{0xff}, 11)...)},
		{"truncated command", valid[:len(valid)-1]},
		{"command length past the end", append(bytes.Clone(header), 1, 9, 1, 2)},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
	} {
		_, cmds, err := fsm.DecodeEntry(c.data)
		if !errors.Is(err, fsm.ErrCorrupt) {
			t.Errorf("%s: got error %v (commands %d), want one wrapping %v", c.name, err, len(cmds), fsm.ErrCorrupt)
		}
	}
}

package fsm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// An application's value, a stream's items and its end are recorded in a
// stateful connection's stream in log order; the items and the end are
// not numbered among the client's messages, the value's completion is
// (once: a resent duplicate changes nothing).
func TestStatefulApplicationValuesAndStreams(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, fsm.EncodeClusterLevel(1), statefulOpen("c1", "u1"))
	enc := func(inv fsm.Invocation) fsm.Command {
		inv.Hub, inv.ConnID = hub, "c1"
		return fsm.EncodeInvocation(&inv)
	}
	f.mustApply(t0, enc(fsm.Invocation{InvocationID: "1", ClientSeq: 1, AppValue: fsm.AppValue{HasValue: true, ValueFormat: 1, Value: []byte(`{"a":1}`)}}))
	f.mustApply(t0, enc(fsm.Invocation{ClientSeq: 2})) // a stream invocation, numbered when it starts
	f.mustApply(t0, enc(fsm.Invocation{InvocationID: "s", AppValue: fsm.AppValue{Item: true, HasValue: true, ValueFormat: 2, Value: []byte{0x01}}}))
	f.mustApply(t0, enc(fsm.Invocation{InvocationID: "s", AppValue: fsm.AppValue{Item: true, HasValue: true, ValueFormat: 2, Value: []byte{0x02}}}))
	f.mustApply(t0, enc(fsm.Invocation{InvocationID: "s", Error: "ended badly", AppValue: fsm.AppValue{StreamEnd: true}}))
	res := f.mustApply(t0, enc(fsm.Invocation{InvocationID: "1", ClientSeq: 1, AppValue: fsm.AppValue{HasValue: true, ValueFormat: 1, Value: []byte(`"again"`)}}))
	if !res[0].Duplicate {
		t.Fatalf("a resent invocation: got %+v, want a duplicate", res[0])
	}
	events, _, err := f.ReadConnection(hub, "c1", fsm.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		switch {
		case e.Item:
			got = append(got, "item "+e.InvocationID+" "+string(rune('0'+e.ValueFormat))+":"+string(rune('0'+e.Value[0])))
		case e.HasValue:
			got = append(got, "completion "+e.InvocationID+" "+string(e.Value))
		default:
			got = append(got, "end "+e.InvocationID+" "+e.Error)
		}
	}
	want := []string{`completion 1 {"a":1}`, "item s 2:1", "item s 2:2", "end s ended badly"}
	if len(got) != len(want) {
		t.Fatalf("stream: got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stream event %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

// Malformed combinations are refused before they reach the log.
func TestInvocationFlagsValidated(t *testing.T) {
	for name, inv := range map[string]fsm.Invocation{
		"item without a value":       {InvocationID: "s", AppValue: fsm.AppValue{Item: true}},
		"numbered item":              {InvocationID: "s", ClientSeq: 3, AppValue: fsm.AppValue{Item: true, HasValue: true, Value: []byte("1")}},
		"item of no stream":          {AppValue: fsm.AppValue{Item: true, HasValue: true, Value: []byte("1")}},
		"item and end":               {InvocationID: "s", AppValue: fsm.AppValue{Item: true, StreamEnd: true, HasValue: true, Value: []byte("1")}},
		"end with a value":           {InvocationID: "s", AppValue: fsm.AppValue{StreamEnd: true, HasValue: true, Value: []byte("1")}},
		"numbered end":               {InvocationID: "s", ClientSeq: 2, AppValue: fsm.AppValue{StreamEnd: true}},
		"item carrying an error too": {InvocationID: "s", Error: "x", AppValue: fsm.AppValue{Item: true, HasValue: true, Value: []byte("1")}},
	} {
		inv.Hub, inv.ConnID = hub, "c1"
		err := fsm.ValidateCommand(fsm.EncodeInvocation(&inv))
		if !errors.Is(err, fsm.ErrInvalidCommand) {
			t.Errorf("%s: got %v, want ErrInvalidCommand", name, err)
		}
	}
	ok := fsm.Invocation{Hub: hub, ConnID: "c1", InvocationID: "1", ClientSeq: 1}
	if err := fsm.ValidateCommand(fsm.EncodeInvocation(&ok)); err != nil {
		t.Fatalf("a relay-shaped invocation: got %v, want it valid", err)
	}
}

// Until the cluster's feature level allows them, what level 1 adds is
// refused on apply and changes nothing, as a replica of an older version
// (which cannot decode it) refuses it; the level only goes up, and a level
// above this version's is refused.
func TestFeatureLevelGatesWhatOlderVersionsRefuse(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, statefulOpen("c1", "u1"))
	gated := []fsm.Command{
		fsm.EncodePublish(&fsm.Publish{Hub: "chat-room", Audience: fsm.ToAll, Target: "t", Arguments: []byte(`[]`)}),
		fsm.EncodeMembership(&fsm.Membership{Hub: "chat-room", Group: "g", Kind: fsm.MemberUser, Member: "u"}, true),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "c1", InvocationID: "1", ClientSeq: 1, AppValue: fsm.AppValue{HasValue: true, ValueFormat: 1, Value: []byte(`1`)}}),
		fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "c1", InvocationID: "s", AppValue: fsm.AppValue{Item: true, HasValue: true, ValueFormat: 1, Value: []byte(`1`)}}),
	}
	before := f.LastMessage()
	for i, res := range f.apply(t0, gated...) {
		if !errors.Is(res.Err, fsm.ErrInvalidCommand) {
			t.Fatalf("command %d before level 1: got %v, want it refused", i, res.Err)
		}
	}
	if events, _, _ := f.ReadConnection(hub, "c1", fsm.Position{}, 10); len(events) != 0 || f.LastMessage() != before {
		t.Fatalf("after the refusals: got %d events and last message %d, want nothing changed", len(events), f.LastMessage())
	}
	if res := f.apply(t0, fsm.EncodeClusterLevel(fsm.Level+1)); !errors.Is(res[0].Err, fsm.ErrUnknownCommand) || f.ClusterLevel() != 0 {
		t.Fatalf("a level above this version's: got %v and level %d, want it refused", res[0].Err, f.ClusterLevel())
	}
	f.mustApply(t0, fsm.EncodeClusterLevel(1))
	f.mustApply(t0, fsm.EncodeClusterLevel(0)) // never lowers
	mustEqualLevel(t, f.ClusterLevel(), 1)
	for i, res := range f.apply(t0, gated...) {
		if res.Err != nil {
			t.Fatalf("command %d at level 1: got %v, want it applied", i, res.Err)
		}
	}
}

func mustEqualLevel(t *testing.T, got, want uint64) {
	t.Helper()
	if got != want {
		t.Fatalf("cluster level: got %d, want %d", got, want)
	}
}

// A stream the old holder was running when the connection resumes on
// another node ends with an error completion, once; a stream that ended
// before, and a resume on the same node, change nothing.
func TestStatefulTakeoverEndsOpenStreams(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, fsm.EncodeClusterLevel(1), statefulOpen("c1", "u1"))
	start := func(seq uint64, id string) fsm.Command {
		return fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "c1", InvocationID: id, ClientSeq: seq, AppValue: fsm.AppValue{StreamStart: true}})
	}
	end := fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: "c1", InvocationID: "done", AppValue: fsm.AppValue{StreamEnd: true}})
	f.mustApply(t0, start(1, "s1"), start(2, "s2"), start(3, "done"), end)
	f.mustApply(t0, statefulOpen("c1", "u1")) // the same holder again: nothing ends
	takeover := fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "c1", UserID: "u1", NodeID: "n2", TokenHash: []byte("hash-c1")})
	f.mustApply(t0, takeover)
	f.mustApply(t0, takeover) // n2 again: nothing more
	events, _, err := f.ReadConnection(hub, "c1", fsm.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.InvocationID+":"+e.Error)
	}
	want := []string{"done:", "s1:" + "The stream ended: the server that ran it no longer serves this connection; invoke it again.", "s2:" + "The stream ended: the server that ran it no longer serves this connection; invoke it again."}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("stream events: got %q, want %q", got, want)
	}
}

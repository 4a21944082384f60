package fsm_test

import (
	"testing"

	"github.com/backplane/backplane/fsm"
)

func statefulOpen(conn, user string) fsm.Command {
	return fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: conn, UserID: user, NodeID: "n1", TokenHash: []byte("hash-" + conn)})
}

func invoke(conn, id string, seq uint64, inner fsm.Command) fsm.Command {
	return fsm.EncodeInvocation(&fsm.Invocation{Hub: hub, ConnID: conn, InvocationID: id, ClientSeq: seq, Inner: inner})
}

// describe renders a stream as "m<index>" for messages and
// "c<invocation id>=<result>" for completions.
func describe(events []fsm.ConnEvent) []string {
	var out []string
	for _, e := range events {
		if e.Message != nil {
			out = append(out, "m"+itoa(e.Message.Index))
			continue
		}
		s := "c" + e.InvocationID
		if e.HasResult {
			s += "=" + itoa(e.Result)
		}
		if e.Error != "" {
			s += "!"
		}
		out = append(out, s)
	}
	return out
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

func TestStatefulStreamIsDerivedFromTheLog(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, publish(fsm.ToAll))                                            // m1: before the connection opened
	f.mustApply(t0, statefulOpen("c1", "u1"))                                      //
	f.mustApply(t0, publish(fsm.ToAll))                                            // m2: for c1
	f.mustApply(t0, invoke("c1", "1", 1, join("g", fsm.MemberConnection, "c1")))   // c1 completes, void
	f.mustApply(t0, publish(fsm.ToGroups, "g"))                                    // m3: c1 is in g
	f.mustApply(t0, publish(fsm.ToGroups, "other"))                                // m4: not for c1
	f.mustApply(t0, invoke("c1", "2", 2, publish(fsm.ToGroups, "g")))              // m5 and its completion c2=5 before it
	f.mustApply(t0, leave("g", fsm.MemberConnection, "c1"))                        // leaves g
	f.mustApply(t0, publish(fsm.ToGroups, "g"))                                    // m6: not for c1 any more
	f.mustApply(t0, join("ug", fsm.MemberUser, "u1"), publish(fsm.ToGroups, "ug")) // m7: for c1 through its user
	f.mustApply(t0, toAll("c1"))                                                   // m8: excludes c1
	f.mustApply(t0, publish(fsm.ToConnections, "c1"))                              // m9

	events, open, err := f.ReadConnection(hub, "c1", fsm.Position{}, 100)
	if err != nil || !open {
		t.Fatalf("ReadConnection: open=%v err=%v", open, err)
	}
	got, want := describe(events), []string{"m2", "c1", "m3", "c2=5", "m5", "m7", "m9"}
	if len(got) != len(want) {
		t.Fatalf("stream: got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stream: got %v, want %v", got, want)
		}
	}
	// Paging from any event's position gives exactly the rest.
	for i := range events {
		rest, _, err := f.ReadConnection(hub, "c1", events[i].Pos, 100)
		if err != nil {
			t.Fatal(err)
		}
		if g := describe(rest); len(g) != len(want)-i-1 || (len(g) > 0 && g[0] != want[i+1]) {
			t.Fatalf("after event %d (%s): got %v, want %v", i, want[i], g, want[i+1:])
		}
	}
	// A resent invocation is a duplicate: no second send, no second completion.
	res := f.apply(t0, invoke("c1", "2", 2, publish(fsm.ToGroups, "g")))
	if !res[0].Duplicate {
		t.Fatalf("resent invocation: got %+v, want a duplicate", res[0])
	}
	if f.LastMessage() != 9 {
		t.Fatalf("last message %d, want 9: the duplicate must not append", f.LastMessage())
	}
	// A checkpoint is replicated state any node can resume from.
	f.mustApply(t0, fsm.EncodeCheckpoints("n1", []fsm.Checkpoint{{Hub: hub, ConnID: "c1", Seq: 4, Pos: events[3].Pos}}))
	st, ok, err := f.StatefulByToken([]byte("hash-c1"))
	if err != nil || !ok || st.AckSeq != 4 || st.AckPos != events[3].Pos || st.ClientSeq != 2 || st.UserID != "u1" {
		t.Fatalf("state by token: %+v ok=%v err=%v", st, ok, err)
	}
	rest, _, _ := f.ReadConnection(hub, "c1", st.AckPos, 100)
	if g := describe(rest); len(g) != 3 || g[0] != "m5" {
		t.Fatalf("after the checkpoint: got %v, want [m5 m7 m9]", g)
	}
	// Closing forgets it.
	f.mustApply(t0, connClose("c1"))
	if _, ok, _ := f.StatefulByToken([]byte("hash-c1")); ok {
		t.Fatal("a closed connection is still found by its token")
	}
	if _, open, _ := f.ReadConnection(hub, "c1", fsm.Position{}, 10); open {
		t.Fatal("a closed connection still reads as open")
	}
}

func TestStatefulResumeOnAnotherNodeKeepsItsState(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, statefulOpen("c1", "u1"))
	f.mustApply(t0, invoke("c1", "1", 1, join("g", fsm.MemberConnection, "c1")))
	takeover := fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "c1", UserID: "u1", NodeID: "n2", TokenHash: []byte("hash-c1")})
	f.mustApply(t0, takeover)
	info, ok, _ := f.Connection(hub, "c1")
	st, _, _ := f.StatefulByToken([]byte("hash-c1"))
	if !ok || info.NodeID != "n2" || st.ClientSeq != 1 {
		t.Fatalf("after takeover: conn %+v state %+v", info, st)
	}
	if member, _ := f.IsMember(hub, "g", fsm.MemberConnection, "c1"); !member {
		t.Fatal("the resumed connection lost its group")
	}
	wrong := fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "c1", NodeID: "n3", TokenHash: []byte("forged")})
	if res := f.apply(t0, wrong); res[0].Err == nil {
		t.Fatal("a takeover with another token must be rejected")
	}
}

// A long run of messages that exclude the connection does not stall its
// reader: a Skip event moves the position past them.
func TestStatefulReaderSkipsPastExcludedRuns(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, statefulOpen("c1", ""))
	for i := 0; i < 300; i++ {
		f.mustApply(t0, toAll("c1"))
	}
	last := f.mustApply(t0, publish(fsm.ToAll))[0].Index
	var pos fsm.Position
	for reads := 0; reads < 10; reads++ {
		events, _, err := f.ReadConnection(hub, "c1", pos, 128)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			t.Fatalf("read %d after %+v: no event and no skip: the reader would stall", reads, pos)
		}
		for _, e := range events {
			if e.Skip {
				if e.Message != nil {
					t.Fatalf("a skip carries a message: %+v", e)
				}
				pos = e.Pos
				continue
			}
			if e.Message == nil || e.Message.Index != last {
				t.Fatalf("got %+v, want only message %d", e, last)
			}
			return
		}
	}
	t.Fatal("never reached the message after the excluded run")
}

func TestStatefulCommandTypesArePinned(t *testing.T) {
	for _, c := range []struct {
		t    fsm.CommandType
		v    byte
		name string
	}{{fsm.CmdInvocation, 9, "invocation"}, {fsm.CmdCheckpoint, 10, "checkpoint"}, {fsm.CmdStatefulOpen, 11, "stateful-open"}} {
		if byte(c.t) != c.v || c.t.String() != c.name {
			t.Errorf("command %s: value %d name %q, want %d %q", c.name, byte(c.t), c.t.String(), c.v, c.name)
		}
	}
}

package fsm_test

import (
	"errors"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// A holder's close names the holder: once another node took the
// connection over, the old holder's late close changes nothing. A close
// that names no node (the REST API) applies whoever holds it.
func TestCloseByAnOldHolderAfterATakeover(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, statefulOpen("c1", "u1")) // held by n1
	f.mustApply(t0, invoke("c1", "1", 1, join("g", fsm.MemberConnection, "c1")))
	f.mustApply(t0, fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: hub, ConnID: "c1", UserID: "u1", NodeID: "n2", TokenHash: []byte("hash-c1")}))

	late := fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: "c1", NodeID: "n1", Reason: "not resumed in time"})
	if res := f.apply(t0, late); !errors.Is(res[0].Err, fsm.ErrInvalidCommand) {
		t.Fatalf("close by the old holder: got %+v, want it rejected", res[0])
	}
	info, ok, err := f.Connection(hub, "c1")
	if err != nil || !ok || info.NodeID != "n2" {
		t.Fatalf("after the old holder's close: got %+v open=%v err=%v, want it open on n2", info, ok, err)
	}
	if _, ok, _ := f.StatefulByToken([]byte("hash-c1")); !ok {
		t.Fatal("after the old holder's close: got the stateful record forgotten, want it kept")
	}
	if member, _ := f.IsMember(hub, "g", fsm.MemberConnection, "c1"); !member {
		t.Fatal("after the old holder's close: got the connection out of its group, want it kept")
	}

	f.mustApply(t0, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: "c1", NodeID: "n2", Reason: "client closed"}))
	if _, ok, _ := f.Connection(hub, "c1"); ok {
		t.Fatal("close by the holder: got the connection open, want it closed")
	}
	if _, ok, _ := f.StatefulByToken([]byte("hash-c1")); ok {
		t.Fatal("close by the holder: got the stateful record kept, want it forgotten")
	}

	f.mustApply(t0, connOpen("c2", "", "n1"))
	f.mustApply(t0, connClose("c2")) // names no node
	if _, ok, _ := f.Connection(hub, "c2"); ok {
		t.Fatal("close naming no node: got the connection open, want it closed")
	}
}

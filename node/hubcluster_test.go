package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/signalr"
)

// TestHubClusterCommitsSignalRRequests drives the SignalR layer's adapter
// on a follower of a real two-node cluster: every request is committed
// through the log, a rejection (decided by the leader and forwarded back)
// comes back as one error that is a signalr.ErrRejected with the state
// machine's reason, and a relay batch answers one outcome per invocation.
func TestHubClusterCommitsSignalRRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := startCluster(t, clusterOptions{size: 2})
	leader, follower := c.waitLeader(), c.followers()[0]
	// The nodes' own SignalR layers stop first: a restarted layer's sweep
	// would expire the connections this test records in their name.
	for _, n := range c.nodes {
		n.hubs.Stop()
	}
	hc, other := hubCluster{follower.Node}, hubCluster{leader.Node}
	applied := func(entry uint64) {
		t.Helper()
		waitFor(t, 5*time.Second, "the follower to apply its write", func() (bool, string) {
			return follower.fsm.AppliedIndex() >= entry, "behind"
		})
	}

	entry, err := hc.OpenConnection(ctx, signalr.Opening{Hub: "chat", ConnID: "c1", UserID: "u1"})
	if err != nil || entry == 0 {
		t.Fatalf("OpenConnection: got entry %d, error %v, want an entry and nil", entry, err)
	}
	applied(entry)
	if holder, open, err := hc.ConnectionHolder("chat", "c1"); err != nil || !open || holder != follower.cfg.ID {
		t.Fatalf("holder of c1: got %q, open %v, error %v, want %q, open", holder, open, err, follower.cfg.ID)
	}

	// Another node may not close a connection it does not hold.
	err = other.CloseConnection(ctx, "chat", "c1", "not mine")
	if !errors.Is(err, signalr.ErrRejected) || !errors.Is(err, fsm.ErrInvalidCommand) || !strings.Contains(err.Error(), "is held by node") {
		t.Fatalf("close by a node that does not hold it: got %v, want a rejection naming the holder", err)
	}
	// Nor is a plain connection's invocation recorded: the rejection
	// still names the entry that carried it.
	entry, err = hc.RecordInvocation(ctx, signalr.Invocation{Hub: "chat", ConnID: "c1", InvocationID: "1", ClientSeq: 1})
	if !errors.Is(err, signalr.ErrRejected) || entry == 0 {
		t.Fatalf("invocation of a plain connection: got entry %d, error %v, want an entry and a rejection", entry, err)
	}

	if err := hc.CheckRelay("chat", "c1", signalr.Relay{Op: signalr.SendToUser, Name: "u1"}); !errors.Is(err, fsm.ErrInvalidCommand) {
		t.Fatalf("CheckRelay of a send without a target: got %v, want an invalid command", err)
	}
	if err := hc.CheckRelay("chat", "c1", signalr.Relay{Op: signalr.JoinGroup, Name: strings.Repeat("g", fsm.MaxGroupNameLen+1)}); !errors.Is(err, fsm.ErrInvalidCommand) {
		t.Fatalf("CheckRelay of a join with a long group name: got %v, want an invalid command", err)
	}
	relays := []signalr.Relay{
		{Op: signalr.JoinGroup, Name: "g"},
		{Op: signalr.SendToGroup, Name: "g", Target: "toGroup", Arguments: []byte(`[1]`)},
		{Op: signalr.SendToAll, Target: "toAll", Arguments: []byte(`[]`)},
	}
	for _, r := range relays {
		if err := hc.CheckRelay("chat", "c1", r); err != nil {
			t.Fatalf("CheckRelay(%+v): got %v, want nil", r, err)
		}
	}
	out, err := hc.Relay(ctx, "chat", "c1", relays)
	if err != nil || len(out) != 3 {
		t.Fatalf("Relay: got %+v, %v, want 3 outcomes", out, err)
	}
	if out[0].Err != nil || out[0].Index != 0 || out[1].Err != nil || out[2].Err != nil || out[1].Index == 0 || out[2].Index != out[1].Index+1 {
		t.Fatalf("Relay outcomes: got %+v, want the join (index 0), then two sends in order", out)
	}
	waitFor(t, 5*time.Second, "the follower to apply the relay batch", func() (bool, string) {
		return follower.fsm.LastMessage() >= out[2].Index, "behind"
	})
	members, err := hc.GroupMembers("chat", "g")
	if err != nil || len(members) != 1 || members[0] != (fsm.GroupMember{Kind: fsm.MemberConnection, Name: "c1"}) {
		t.Fatalf("members of g: got %+v, %v, want only c1", members, err)
	}

	// The one expiry path: a kept connection stays, the rest expire.
	if _, err := hc.OpenConnection(ctx, signalr.Opening{Hub: "chat", ConnID: "c2"}); err != nil {
		t.Fatalf("OpenConnection(c2): %v", err)
	}
	n, err := other.ExpireConnections(ctx, follower.cfg.ID, "test", func(hub, connID string) bool { return connID == "c2" })
	if err != nil || n != 1 {
		t.Fatalf("ExpireConnections: got %d, %v, want 1 expired", n, err)
	}
	waitFor(t, 5*time.Second, "c1 to expire on the follower", func() (bool, string) {
		_, open, _ := hc.ConnectionHolder("chat", "c1")
		return !open, "c1 still open"
	})
	if _, open, err := hc.ConnectionHolder("chat", "c2"); err != nil || !open {
		t.Fatalf("c2 after the expiry: got open %v, error %v, want it kept", open, err)
	}
}

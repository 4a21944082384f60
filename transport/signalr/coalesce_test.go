package signalr

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
)

// Messages the dispatcher reads together reach each WebSocket in one frame:
// it queues the whole run before it wakes the writers, so a writer never
// starts on the first record while the others are still being queued.
func TestMessagesReadTogetherShareAFrame(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	var clients []*wsClient
	for range 50 {
		clients = append(clients, ts.openWS("chat", ""))
	}

	const n = wakeEvery - 1 // one run: the dispatcher wakes the writers once
	var cmds []fsm.Command
	var want []string
	for i := range n {
		target := fmt.Sprintf("m%d", i)
		cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: target, Arguments: []byte(`[1]`)}))
		want = append(want, target)
	}
	// The writer that sent a socket's handshake answer may still be
	// finishing: it would take the first record on its way out.
	waitWritersIdle(t, ts)
	// One Raft entry: applied at once, so the dispatcher reads it in one page.
	if _, err := ts.cluster.Propose(context.Background(), cmds); err != nil {
		t.Fatalf("propose %d publishes: %v", n, err)
	}
	for i, c := range clients {
		var got []string
		for _, raw := range splitRecords(t, string(c.frame().data)) {
			got = append(got, parseRecord(t, raw).Target)
		}
		mustEqual(t, fmt.Sprintf("client %d: targets in its first frame", i), strings.Join(got, ","), strings.Join(want, ","))
	}
}

// waitWritersIdle waits until no socket of ts has a writer running.
func waitWritersIdle(t *testing.T, ts *testServer) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "every socket's writer to finish", func() (bool, string) {
		ts.srv.mu.RLock()
		defer ts.srv.mu.RUnlock()
		for id, c := range ts.srv.byID {
			if sock := c.socketOf(); sock != nil && sock.writing.Load() {
				return false, "connection " + id + " is writing"
			}
		}
		return true, ""
	})
}

// A page of messages to the same groups reads each group's members once:
// a chat room's burst costs one read of the state machine, not one per
// message, and every member still gets every message, in order.
func TestGroupMembersAreReadOncePerPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	inRoom := []*wsClient{ts.openWS("chat", ""), ts.openWS("chat", "")}
	outside := ts.openWS("chat", "")
	var joins []fsm.Command
	for _, c := range inRoom {
		joins = append(joins, fsm.EncodeMembership(&fsm.Membership{Hub: "chat", Group: "room", Kind: fsm.MemberConnection, Member: c.id}, true))
	}
	if res, err := ts.cluster.Propose(t.Context(), joins); err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("join room: got %v, %v, want nil", err, resultErr(res))
	}

	const n = 12
	var cmds []fsm.Command
	var want []string
	for i := range n {
		target := fmt.Sprintf("m%d", i)
		group := "room"
		if i%2 == 1 {
			group = "empty" // a second group, nobody in it
		}
		cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{group}, Target: target, Arguments: []byte(`[1]`)}))
		if group == "room" {
			want = append(want, target)
		}
	}
	cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "end", Arguments: []byte(`[1]`)}))
	before := ts.cluster.groupReads.Load()
	// One Raft entry: applied at once, so the dispatcher reads it in one page.
	if _, err := ts.cluster.Propose(t.Context(), cmds); err != nil {
		t.Fatalf("propose %d publishes: %v", len(cmds), err)
	}
	for i, c := range inRoom {
		var got []string
		for r := c.next(); r.Target != "end"; r = c.next() {
			got = append(got, r.Target)
		}
		mustEqual(t, fmt.Sprintf("room member %d: targets", i), strings.Join(got, ","), strings.Join(want, ","))
	}
	mustEqual(t, "first message outside the room", outside.next().Target, "end")
	if reads := ts.cluster.groupReads.Load() - before; reads != 2 {
		t.Fatalf("group member reads for one page of %d messages to 2 groups: got %d, want 2", n, reads)
	}
}

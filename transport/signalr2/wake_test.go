package signalr2

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
)

// A waiting connection wakes only when one of its own hubs changes: a busy
// hub elsewhere on the node does not make it read its records, groups and
// messages again for each of its entries. The connection here is in two
// hubs, and still gets its hubs' messages.
func TestWaitingConnectionsSleepThroughOtherHubs(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "", "chat", "news")
	ws := dialWS(t, c, "connect", nil)
	if f := readFrame(t, ws); string(f["S"]) != "1" {
		t.Fatalf("first frame %v, want the init frame S 1", f)
	}
	waitingOnce := func() (bool, string) {
		n := tc.waiting.Load()
		return n == 1, fmt.Sprintf("%d waits in progress", n)
	}
	testkit.WaitFor(t, 10*time.Second, "the connection to wait for a change", waitingOnce)
	before := tc.waits.Load()

	for i := range 40 {
		tc.publish(t, &fsm.Publish{Hub: "other", Audience: fsm.ToAll, Target: fmt.Sprint("m", i)})
	}
	tc.publish(t, &fsm.Publish{Hub: "news", Audience: fsm.ToAll, Target: "headline"})
	var msgs []json.RawMessage
	if err := json.Unmarshal(readFrame(t, ws)["M"], &msgs); err != nil || len(msgs) != 1 {
		t.Fatalf("frame after the news: got %d messages (%v), want 1", len(msgs), err)
	}
	testkit.WaitFor(t, 10*time.Second, "the connection to wait again", func() (bool, string) {
		if tc.waits.Load() == before {
			return false, "no new wait yet"
		}
		return waitingOnce()
	})
	// The news woke the wait in progress; unless its read had not run yet
	// (then it found the news at once), the wait looked again: a new wait.
	// The stream then waits again after writing the news: one more. A wake
	// for entries of the other hub would have made more.
	if got := tc.waits.Load() - before; got > 2 {
		t.Fatalf("waits after 40 entries of another hub and 1 of the connection's: got %d, want 1 or 2", got)
	}
}

// A waiting connection sleeps through the other connections of its hub:
// their connects, joins and closes change their own state, not its, so a
// hub of many SignalR 2 clients does not wake every one at each client's
// connect.
func TestWaitingConnectionsSleepThroughOtherConnections(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "", "chat")
	ws := dialWS(t, c, "connect", nil)
	if f := readFrame(t, ws); string(f["S"]) != "1" {
		t.Fatalf("first frame %v, want the init frame S 1", f)
	}
	mine := fsm.ConnectionOf("chat", c.id)
	testkit.WaitFor(t, 10*time.Second, "the connection to wait for a change", func() (bool, string) {
		n := tc.waiting.Load()
		return n == 1, fmt.Sprintf("%d waits in progress", n)
	})
	before := tc.waitsIncluding(mine)

	for i := range 20 {
		other := negotiate(t, hs.URL, fmt.Sprint("user", i), "chat")
		other.connectLP()
		if _, err := tc.commit(fsm.EncodeMembership(&fsm.Membership{Hub: "chat", Group: "g", Kind: fsm.MemberConnection, Member: other.id}, true)); err != nil {
			t.Fatal(err)
		}
	}
	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "news", Arguments: []byte(`[1]`)})
	if f := readFrame(t, ws); string(f["C"]) != `"`+formatCursor(idx)+`"` {
		t.Fatalf("frame %v, want the message at %d", f, idx)
	}
	testkit.WaitFor(t, 10*time.Second, "the connection to wait again", func() (bool, string) {
		return tc.waitsIncluding(mine) > before && tc.waiting.Load() == 1, fmt.Sprintf("%d waits since, %d in progress", tc.waitsIncluding(mine)-before, tc.waiting.Load())
	})
	// As in TestWaitingConnectionsSleepThroughOtherHubs: the message woke
	// it, at most one look again, and the wait after writing.
	if got := tc.waitsIncluding(mine) - before; got > 2 {
		t.Fatalf("waits of the connection while 20 others connected and joined: got %d, want 1 or 2", got)
	}
}

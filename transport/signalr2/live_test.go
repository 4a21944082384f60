package signalr2

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// TestReaperClosesConnectionsWhoseClientIsGone: the holder closes a
// connection its client has not used for the disconnect timeout plus
// 5 s, not one with a request in progress, and not one another node
// took over meanwhile (that close is rejected and changes nothing).
func TestReaperClosesConnectionsWhoseClientIsGone(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{DisconnectTimeout: time.Second})
	gone := negotiate(t, hs.URL, "", "chat")
	gone.connectLP()
	moved := negotiate(t, hs.URL, "", "chat")
	moved.connectLP()
	busy := negotiate(t, hs.URL, "", "chat")
	busy.connectLP()
	end := s.live.begin(&conn{id: busy.id, hubs: []string{"chat"}}, tc.id, tc.id, "")
	defer end()
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: moved.id, NodeID: "node-b"})); err != nil {
		t.Fatal(err)
	}

	s.reapOnce(time.Now().Add(5 * time.Second)) // before 1 s + 5 s
	for _, c := range []*client{gone, moved, busy} {
		if _, open, _ := tc.Holder("chat", c.id); !open {
			t.Fatalf("connection %s closed before the disconnect timeout", c.id)
		}
	}
	s.reapOnce(time.Now().Add(7 * time.Second))
	if _, open, _ := tc.Holder("chat", gone.id); open {
		t.Fatal("the idle connection is still open after the disconnect timeout")
	}
	if holder, open, _ := tc.Holder("chat", moved.id); !open || holder != "node-b" {
		t.Fatalf("the connection another node took over: open %v holder %q, want open on node-b", open, holder)
	}
	if _, open, _ := tc.Holder("chat", busy.id); !open {
		t.Fatal("the connection with a request in progress was closed")
	}
}

// TestPollsElsewhereKeepTheConnectionAlive: a node that serves the polls
// of a connection held elsewhere tells the holder every TouchInterval;
// a holder told so keeps the connection; when the holder cannot be
// reached, the node takes the connection over, restoring the groups of
// its last groups token if its record is gone.
func TestPollsElsewhereKeepTheConnectionAlive(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{TouchInterval: time.Second, ConnectionTimeout: 50 * time.Millisecond})
	c := negotiate(t, hs.URL, "", "chat")
	init := c.connectLP()
	c.send(`{"H":"chat","M":"JoinGroup","A":["g"],"I":1}`)
	polled := c.poll(init.C, "")
	// Another node (node-b) becomes the holder; polls still come here.
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: c.id, NodeID: "node-b"})); err != nil {
		t.Fatal(err)
	}
	s.live.forget(c.id)
	c.poll(polled.C, polled.G)
	s.reapOnce(time.Now().Add(2 * time.Second))
	tc.mu.Lock()
	touched := slices.Clone(tc.touched["node-b"])
	tc.mu.Unlock()
	if !slices.Equal(touched, []string{c.id}) {
		t.Fatalf("touches to node-b = %v, want [%s]", touched, c.id)
	}

	// node-b is down and its connections were expired: the next report
	// fails and this node takes the connection over, with its groups.
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: "chat", ConnID: c.id, NodeID: "node-b"})); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	tc.touchErr = fmt.Errorf("dial node-b: %w", errTestUnreachable)
	tc.mu.Unlock()
	s.live.mu.Lock()
	s.live.seen[c.id].reported = time.Now().Add(-time.Minute) // the report above was long ago
	s.live.mu.Unlock()
	s.live.begin(&conn{id: c.id, hubs: []string{"chat"}}, tc.id, "node-b", polled.G)()
	s.reapOnce(time.Now().Add(2 * time.Second))
	if holder, open, _ := tc.Holder("chat", c.id); !open || holder != tc.id {
		t.Fatalf("after the holder went down: open %v holder %q, want taken over by %s", open, holder, tc.id)
	}
	if ok, _ := tc.f.IsMember("chat", "g", fsm.MemberConnection, c.id); !ok {
		t.Fatal("the take-over did not restore the connection's group")
	}
}

// TestServeTouch: a member's report keeps this node's connection alive
// past the disconnect timeout; a malformed report is refused.
func TestServeTouch(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{DisconnectTimeout: time.Second})
	c := negotiate(t, hs.URL, "", "chat")
	c.connectLP()
	ts := httptest.NewServer(http.HandlerFunc(s.ServeTouch))
	defer ts.Close()
	resp, err := http.Post(ts.URL, "application/json", bytes.NewReader([]byte("{not json")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed touch = %d, want 400", resp.StatusCode)
	}
	// Backdate what this node saw, then report the connection as seen.
	s.live.mu.Lock()
	s.live.held[c.id].lastSeen = time.Now().Add(-10 * time.Second)
	s.live.mu.Unlock()
	resp, err = http.Post(ts.URL, "application/json", bytes.NewReader(TouchBody([]string{c.id, "unknown"})))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("touch = %d, want 204", resp.StatusCode)
	}
	s.reapOnce(time.Now().Add(3 * time.Second))
	if _, open, _ := tc.Holder("chat", c.id); !open {
		t.Fatal("a connection reported alive by a member was closed")
	}
}

package signalr2

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
)

// restDelete closes a connection's record as DELETE
// /v1/hubs/{hub}/connections/{id} does: a close naming no node.
func restDelete(t *testing.T, tc *testCluster, hub, connID string) {
	t.Helper()
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: connID, Reason: "closed through the REST API"})); err != nil {
		t.Fatalf("close %s: %v", connID, err)
	}
}

// TestHoldsClaimsTheConnectionsThisNodeServes: Holds is true for a
// connection this node holds (in its hubs only), for one with a request
// in progress here before its record exists, and false once the
// connection ended (aborted, or found closed).
func TestHoldsClaimsTheConnectionsThisNodeServes(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{})
	a := negotiate(t, hs.URL, "", "chat", "news")
	if s.Holds("chat", a.id) {
		t.Fatal("Holds is true for a connection only negotiated")
	}
	a.connectLP()
	for _, hub := range []string{"chat", "News"} {
		if !s.Holds(hub, a.id) {
			t.Fatalf("Holds(%s) is false for a connection this node recorded", hub)
		}
	}
	if s.Holds("other", a.id) {
		t.Fatal("Holds is true for a hub the connection did not name")
	}

	// A request in progress (a reconnect of an earlier run's connection,
	// say) is claimed before its record is written.
	b := &conn{id: "conn-b", hubs: []string{"chat"}}
	end := s.live.serve(b)
	if !s.Holds("chat", b.id) {
		t.Fatal("Holds is false for a connection with a request in progress")
	}
	end()
	if s.Holds("chat", b.id) {
		t.Fatal("Holds is still true after the request ended")
	}

	if st, _ := a.do(http.MethodPost, "abort", url.Values{"transport": {transportLongPoll}}, url.Values{}); st != http.StatusOK {
		t.Fatalf("abort: %d", st)
	}
	if s.Holds("chat", a.id) {
		t.Fatal("Holds is true for an aborted connection")
	}

	c := negotiate(t, hs.URL, "", "chat")
	e := c.connectLP()
	restDelete(t, tc, "chat", c.id)
	if got := c.poll(e.C, ""); got.E != msgClosed {
		t.Fatalf("poll after a REST DELETE: %+v, want E %q", got, msgClosed)
	}
	if s.Holds("chat", c.id) {
		t.Fatal("Holds is true for a connection found closed")
	}
}

// TestRESTDeleteInTheNodesFirstSecondsStaysDeleted: a SignalR 2
// connection closed through the REST API right after its node started is
// told it was closed, over long polling and over a WebSocket, and its
// record stays closed (nothing records it again).
func TestRESTDeleteInTheNodesFirstSecondsStaysDeleted(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})

	lp := negotiate(t, hs.URL, "", "chat")
	e := lp.connectLP()
	restDelete(t, tc, "chat", lp.id)
	if got := lp.poll(e.C, ""); got.E != msgClosed {
		t.Fatalf("poll after a REST DELETE: %+v, want E %q", got, msgClosed)
	}
	if st, body := lp.do(http.MethodPost, "start", url.Values{"transport": {transportLongPoll}}, url.Values{}); st != http.StatusBadRequest {
		t.Fatalf("start after a REST DELETE: %d %s, want 400", st, body)
	}

	ws := negotiate(t, hs.URL, "", "chat")
	sock := dialWS(t, ws, "connect", nil)
	if _, _, err := sock.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	restDelete(t, tc, "chat", ws.id)
	_ = sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := sock.ReadMessage()
		if err != nil {
			t.Fatalf("the WebSocket ended without being told it was closed: %v", err)
		}
		if strings.Contains(string(data), msgClosed) {
			break
		}
	}
	_ = sock.WriteControl(websocket.CloseMessage, nil, time.Now().Add(time.Second))

	for _, c := range []*client{lp, ws} {
		if _, open, err := tc.Holder("chat", c.id); err != nil || open {
			t.Fatalf("connection %s: open %v (%v) after its REST DELETE was answered", c.id, open, err)
		}
	}
}

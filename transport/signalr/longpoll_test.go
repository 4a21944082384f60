package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

func TestLongPollFlow(t *testing.T) {
	t.Parallel()
	pollTimeout := 500 * time.Millisecond
	ts := newTestServer(t, testOptions(func(o *Options) { o.PollTimeout = pollTimeout }))
	n := ts.negotiate("chat", "")

	first := ts.poll("chat", n.ConnectionToken)
	if first.status != http.StatusOK || first.body != "" || first.elapsed >= pollTimeout {
		t.Fatalf("first poll: got %d %q after %s, want 200 with an empty body at once", first.status, first.body, first.elapsed)
	}
	ts.post("chat", n.ConnectionToken, handshakeJSON)
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusOK || r.body != "{}"+rs {
		t.Fatalf("poll after the handshake: got %d %q, want 200 %q", r.status, r.body, "{}"+rs)
	}

	idle := ts.poll("chat", n.ConnectionToken)
	if idle.status != http.StatusOK || idle.body != "" || idle.elapsed < pollTimeout*8/10 {
		t.Fatalf("idle poll: got %d %q after %s, want 200 with an empty body after about %s", idle.status, idle.body, idle.elapsed, pollTimeout)
	}

	// A pending poll returns what arrives; an invocation's Completion and
	// the broadcast come together or in two polls.
	pending := ts.pendingPoll("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, invocation("1", "SendToAll", "notify", 1))
	var got []record
	for r := ts.awaitPoll(pending); ; r = ts.poll("chat", n.ConnectionToken) {
		if r.status != http.StatusOK {
			t.Fatalf("poll: got %d %q, want 200", r.status, r.body)
		}
		got = append(got, parseRecords(t, r.body)...)
		if len(got) >= 2 {
			break
		}
	}
	if len(got) != 2 || got[0].Type+got[1].Type != 4 {
		t.Fatalf("polled records: got %+v, want one Completion and one Invocation", got)
	}
	if resp := ts.poll("chat", n.ConnectionToken); resp.body != "" {
		t.Fatalf("poll after everything was read: got %q, want nothing more", resp.body)
	}
}

func TestLongPollNewPollEndsOlder(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.PollTimeout = 3 * time.Second }))
	n := ts.openLP("chat")
	older := ts.pendingPoll("chat", n.ConnectionToken)
	newer := ts.pollAsync("chat", n.ConnectionToken)
	if r := ts.awaitPoll(older); r.status != http.StatusNoContent {
		t.Fatalf("older poll: got %d %q, want 204", r.status, r.body)
	}
	ts.pollPending(n.ConnectionToken)
	ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "notify", Arguments: []byte(`["after"]`)})
	if r := ts.awaitPoll(newer); r.status != http.StatusOK || r.body != `{"type":1,"target":"notify","arguments":["after"]}`+rs {
		t.Fatalf("newer poll: got %d %q, want the notify message", r.status, r.body)
	}
}

func TestLongPollClientStopsPolling(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.DisconnectTimeout = 300 * time.Millisecond }))
	n := ts.openLP("chat")
	waitFor(t, "the idle long-polling connection to be reaped", func() (bool, string) {
		return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
	})
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	mustEqual(t, "POST to the reaped connection", ts.status(http.MethodPost, u, []byte(`{"type":6}`+rs), nil), http.StatusNotFound)
	mustEqual(t, "poll of the reaped connection", ts.status(http.MethodGet, u, nil, nil), http.StatusNotFound)
	waitFor(t, "the close to commit", func() (bool, string) {
		return !ts.cluster.recorded(t, n.ConnectionID), "still in ConnectionsOn"
	})
}

func TestLongPollPostTooLargeClosesWithError(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.MaxMessageSize, o.PollTimeout = 1024, 3*time.Second }))
	n := ts.openLP("chat")
	pending := ts.pendingPoll("chat", n.ConnectionToken)
	big := invocation("1", "SendToAll", "notify", strings.Repeat("x", 2000))
	ts.do(http.MethodPost, ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), []byte(big), nil)
	r := ts.awaitPoll(pending)
	wantPollClose(t, "oversized POST", r, true, false)
}

func TestLongPollDeleteEndsPendingPoll(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.PollTimeout = 3 * time.Second }))
	n := ts.openLP("chat")
	pending := ts.pendingPoll("chat", n.ConnectionToken)
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	mustEqual(t, "DELETE", ts.status(http.MethodDelete, u, nil, nil), http.StatusAccepted)
	if r := ts.awaitPoll(pending); r.status != http.StatusNoContent {
		t.Fatalf("poll pending at the DELETE: got %d %q, want 204", r.status, r.body)
	}
	// The client's Close arrives after its DELETE (as the JS client sends it).
	mustEqual(t, "Close POST after DELETE", ts.status(http.MethodPost, u, []byte(`{"type":7}`+rs), nil), http.StatusNotFound)
	waitFor(t, "the close to commit", func() (bool, string) {
		return !ts.cluster.recorded(t, n.ConnectionID), "still in ConnectionsOn"
	})
}

// wantPollClose wants a poll answered 200 with records that end in exactly
// one Close matching wantErr and wantReconnect (see wantClose); name says
// what closed the connection.
func wantPollClose(t *testing.T, name string, r pollResult, wantErr, wantReconnect bool) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: poll got %d %q, want 200 with a Close", name, r.status, r.body)
	}
	wantClose(t, name, parseRecords(t, r.body), wantErr, wantReconnect)
}

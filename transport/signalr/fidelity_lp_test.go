package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// After the poll that delivered a server-side Close (here: an oversize
// message), the client's DELETE answers 202, as in ASP.NET, and a later
// poll 404.
func TestLongPollDeleteAfterServerCloseIs202(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.MaxMessageSize = 1024 }))
	n := ts.openLP("chat")
	pending := ts.pendingPoll("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, invocation("1", "SendToAll", "big", strings.Repeat("x", 2000)))
	r := ts.awaitPoll(pending)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"type":7`) {
		t.Fatalf("poll after an oversize message: got %d %q, want 200 with a Close", r.status, r.body)
	}
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	if got := ts.status(http.MethodDelete, u, nil, nil); got != http.StatusAccepted {
		t.Fatalf("DELETE after the server's Close: got %d, want 202", got)
	}
	if got := ts.poll("chat", n.ConnectionToken); got.status != http.StatusNotFound {
		t.Fatalf("poll after the DELETE: got %d %q, want 404", got.status, got.body)
	}
}

// After the client's own Close, its pending poll answers 204 and a
// second poll 404, as in ASP.NET.
func TestLongPollSecondPollAfterClientCloseIs404(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.openLP("chat")
	pending := ts.pendingPoll("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, `{"type":7}`+rs)
	if r := ts.awaitPoll(pending); r.status != http.StatusNoContent {
		t.Fatalf("poll pending at the client's Close: got %d %q, want 204", r.status, r.body)
	}
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusNotFound {
		t.Fatalf("second poll after the client's Close: got %d %q, want 404", r.status, r.body)
	}
}

// The same when the server closes the connection while no poll is pending
// (the race the 1.1.4 client hit in CI): the next poll delivers the Close
// and the connection stays for the client's DELETE (202); a poll after
// that Close answers 204 and forgets it.
func TestLongPollDeleteAfterCloseBetweenPollsIs202(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, then := range []string{"delete", "poll"} {
		n := ts.openLP("chat")
		c := ts.srv.lookup(n.ConnectionToken)
		c.end("", true, "test: a server-side close between polls")
		r := ts.poll("chat", n.ConnectionToken)
		if r.status != http.StatusOK || !strings.Contains(r.body, `"type":7`) {
			t.Fatalf("poll after a close between polls: got %d %q, want 200 with a Close", r.status, r.body)
		}
		u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
		switch then {
		case "delete":
			if got := ts.status(http.MethodDelete, u, nil, nil); got != http.StatusAccepted {
				t.Fatalf("DELETE after the poll that delivered the Close: got %d, want 202", got)
			}
		case "poll":
			if got := ts.poll("chat", n.ConnectionToken); got.status != http.StatusNoContent {
				t.Fatalf("poll after the poll that delivered the Close: got %d %q, want 204", got.status, got.body)
			}
			if got := ts.status(http.MethodDelete, u, nil, nil); got != http.StatusNotFound {
				t.Fatalf("DELETE after the 204: got %d, want 404", got)
			}
		}
	}
}

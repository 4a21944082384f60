package signalr

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

func TestReaperNegotiatedNeverConnected(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.DisconnectTimeout = 300 * time.Millisecond }))
	n := ts.negotiate("chat", "")
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	// A POST before any transport is taken (200, as ASP.NET) without
	// binding a transport: the connection is still reaped as unused.
	mustEqual(t, "POST before a transport", ts.status(http.MethodPost, u, []byte(handshakeJSON), nil), http.StatusOK)
	waitFor(t, "the unused connection to be reaped", func() (bool, string) {
		return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
	})
	mustEqual(t, "poll of the reaped connection", ts.status(http.MethodGet, u, nil, nil), http.StatusNotFound)
	_, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("upgrade of the reaped connection: got error %v, status %v, want 404", err, statusOf(resp))
	}
}

// expiringServer authenticates every client with an identity that expires
// after a short while.
func expiringServer(t *testing.T, lifetime time.Duration) *testServer {
	return newTestServer(t, testOptions(func(o *Options) {
		o.PollTimeout = 3 * time.Second
		o.CloseOnAuthenticationExpiration = true
		o.Authenticate = func(r *http.Request) (Identity, error) {
			return Identity{UserID: "u", Expires: time.Now().Add(lifetime)}, nil
		}
	}))
}

func TestReaperIdentityExpiresWebSocket(t *testing.T) {
	t.Parallel()
	lifetime := 500 * time.Millisecond
	ts := expiringServer(t, lifetime)
	start := time.Now()
	c := ts.openWS("chat", "")
	got := c.closed()
	wantClose(t, "expired identity", got, false, true)
	if elapsed := time.Since(start); elapsed < lifetime {
		t.Fatalf("expired identity: got the close after %s, want at least %s", elapsed, lifetime)
	}
}

func TestReaperIdentityExpiresLongPollPending(t *testing.T) {
	t.Parallel()
	ts := expiringServer(t, 500*time.Millisecond)
	n := ts.openLP("chat")
	pending := ts.pollAsync("chat", n.ConnectionToken)
	r := ts.awaitPoll(pending)
	wantPollClose(t, "expired identity over a pending poll", r, false, true)
}

func TestReaperIdentityExpiresBetweenPolls(t *testing.T) {
	t.Parallel()
	ts := expiringServer(t, 300*time.Millisecond)
	n := ts.openLP("chat")
	// No poll is pending when the identity expires: the next poll still
	// learns of the Close.
	waitFor(t, "the expired connection to end", func() (bool, string) {
		c := ts.srv.lookup(n.ConnectionToken)
		return c == nil || c.isDone(), "still open"
	})
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	mustEqual(t, "POST after expiry", ts.status(http.MethodPost, u, []byte(`{"type":6}`+rs), nil), http.StatusNotFound)
	mustEqual(t, "SSE GET after expiry", ts.status(http.MethodGet, u, nil, http.Header{"Accept": {"text/event-stream"}}), http.StatusNotFound)
	r := ts.poll("chat", n.ConnectionToken)
	wantPollClose(t, "expired identity between polls", r, false, true)
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusNoContent && r.status != http.StatusNotFound {
		t.Fatalf("poll after the Close: got %d %q, want 204 or 404", r.status, r.body)
	}
}

// A connection closed in the replicated state (the REST API's DELETE
// /connections/{id}, committed on any node) is closed by its holder.
func TestConnectionClosedInTheClusterIsClosedByItsHolder(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	c := ts.openWS("chat", "")
	other := ts.openWS("chat", "")
	cmd := fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: "chat", ConnID: c.id, Reason: "rest"})
	if _, err := ts.cluster.Propose(context.Background(), []fsm.Command{cmd}); err != nil {
		t.Fatalf("commit the close: %v", err)
	}
	wantClose(t, "connection closed through the cluster", c.closed(), false, false)
	if ts.srv.lookup(other.token) == nil {
		t.Fatal("closing one connection closed another")
	}
}

// By default, as in ASP.NET Core, a connection outlives its access token:
// the reaper leaves it open, and it still sends and receives.
func TestIdentityExpiryDoesNotCloseByDefault(t *testing.T) {
	t.Parallel()
	lifetime := 200 * time.Millisecond
	ts := newTestServer(t, testOptions(func(o *Options) {
		o.Authenticate = func(r *http.Request) (Identity, error) {
			return Identity{UserID: "u", Expires: time.Now().Add(lifetime)}, nil
		}
	}))
	c := ts.openWS("chat", "")
	expired := time.Now().Add(lifetime)
	waitFor(t, "the identity to expire", func() (bool, string) { return time.Now().After(expired), "not yet" })
	ts.srv.reap(time.Now()) // a sweep after the expiry
	if res := c.invoke("1", "SendToAll", "after"); res.Error != "" {
		t.Fatalf("SendToAll after the token expired: got %s, want success", res.raw)
	}
	if got := c.next(); got.Target != "after" {
		t.Fatalf("after the token expired: got %s, want the connection's own send", got.raw)
	}
}

package signalr

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// Every later request of a connection needs a valid token of its user
// when clients are authenticated, as ASP.NET answers 401 to each request
// of an [Authorize] hub (issue 13, item 6).
func TestLaterRequestsAreAuthenticated(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) {
		o.Authenticate = func(r *http.Request) (Identity, error) {
			user := r.URL.Query().Get("user")
			if user == "" || user == "expired" {
				return Identity{}, errors.New("no valid token")
			}
			return Identity{UserID: user}, nil
		}
	}))
	n := ts.negotiate("chat", "user=alice")
	base := "id=" + url.QueryEscape(n.ConnectionToken)
	for _, who := range []string{"", "&user=expired", "&user=mallory"} {
		if _, resp, err := ts.dialWS("chat", base+who, nil); err == nil || statusOf(resp) != http.StatusUnauthorized {
			t.Fatalf("WebSocket upgrade with %q: got %v (status %v), want 401", who, err, statusOf(resp))
		}
		sse := http.Header{"Accept": {"text/event-stream"}}
		mustEqual(t, "SSE GET with "+who, ts.status(http.MethodGet, ts.hubURL("chat", base+who), nil, sse), http.StatusUnauthorized)
		mustEqual(t, "poll with "+who, ts.status(http.MethodGet, ts.hubURL("chat", base+who), nil, nil), http.StatusUnauthorized)
		mustEqual(t, "send with "+who, ts.status(http.MethodPost, ts.hubURL("chat", base+who), []byte(handshakeJSON), nil), http.StatusUnauthorized)
		mustEqual(t, "DELETE with "+who, ts.status(http.MethodDelete, ts.hubURL("chat", base+who), nil, nil), http.StatusUnauthorized)
	}
	// Its own user's token works: a long-polling connection, end to end.
	own := ts.hubURL("chat", base+"&user=alice")
	mustEqual(t, "first poll of alice", ts.status(http.MethodGet, own, nil, nil), http.StatusOK)
	mustEqual(t, "alice's handshake", ts.status(http.MethodPost, own, []byte(handshakeJSON), nil), http.StatusOK)
	resp, body := ts.do(http.MethodGet, own, nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "{}"+rs {
		t.Fatalf("alice's poll: got %d %q, want the handshake answer", resp.StatusCode, body)
	}
	mustEqual(t, "alice's DELETE", ts.status(http.MethodDelete, own, nil, nil), http.StatusAccepted)
}

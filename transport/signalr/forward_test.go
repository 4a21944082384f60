package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// twoNodes starts nodes "a" and "b", each with its own state, knowing
// only each other's URL.
func twoNodes(t *testing.T) (a, b *testServer) {
	t.Helper()
	a = startServer(t, newFakeCluster(t, "a"), testOptions(nil), nil)
	b = startServer(t, newFakeCluster(t, "b"), testOptions(nil), nil)
	a.cluster.setNodeURL("b", b.url)
	b.cluster.setNodeURL("a", a.url)
	return a, b
}

func TestForwardLongPollingToHolder(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	n := a.negotiate("chat", "")
	if !strings.HasSuffix(n.ConnectionToken, "~a") {
		t.Fatalf("token: got %q, want it to name holder a", n.ConnectionToken)
	}
	// Every request goes to b, which holds nothing.
	if r := b.poll("chat", n.ConnectionToken); r.status != http.StatusOK || r.body != "" {
		t.Fatalf("first poll via b: got %d %q, want 200 empty", r.status, r.body)
	}
	b.post("chat", n.ConnectionToken, handshakeJSON)
	if r := b.poll("chat", n.ConnectionToken); r.status != http.StatusOK || r.body != "{}"+rs {
		t.Fatalf("poll via b: got %d %q, want the handshake reply %q from a", r.status, r.body, "{}"+rs)
	}
	if !a.cluster.recorded(t, n.ConnectionID) || b.cluster.recorded(t, n.ConnectionID) {
		t.Fatal("connection: got it recorded other than on a only, want a to hold it")
	}
	if b.srv.lookup(n.ConnectionToken) != nil {
		t.Fatal("node b: got the connection held, want it only forwarded")
	}
	// A token naming an unknown node, or one already gone, is 404.
	mustEqual(t, "poll of a token held by an unknown node", b.status(http.MethodGet, b.hubURL("chat", "id=x~c"), nil, nil), http.StatusNotFound)
	mustEqual(t, "poll of an unknown token held by a", b.status(http.MethodGet, b.hubURL("chat", "id=x~a"), nil, nil), http.StatusNotFound)
	mustEqual(t, "DELETE via b", b.status(http.MethodDelete, b.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), nil, nil), http.StatusAccepted)
}

func TestForwardWebSocketToHolder(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	n := a.negotiate("chat", "")
	c, resp, err := b.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
	if err != nil {
		t.Fatalf("upgrade via b: got error %v (status %v), want a WebSocket to a", err, statusOf(resp))
	}
	c.handshake()
	if r := c.invoke("1", "SendToAll", "notify", "x"); r.Error != "" {
		t.Fatalf("invoke through b: got %s, want a result", r.raw)
	}
	mustEqual(t, "delivery through b", c.next().raw, `{"type":1,"target":"notify","arguments":["x"]}`)
}

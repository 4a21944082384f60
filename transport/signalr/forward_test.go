package signalr

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
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

// A WebSocket relayed by a node that does not hold the connection goes
// through a tunnel: two goroutines on the relaying node, both parked
// waiting for data without a buffer, and both gone when the client leaves.
func TestForwardedWebSocketTunnel(t *testing.T) {
	a, b := twoNodes(t)
	const n = 5
	var clients []*wsClient
	for range n {
		neg := a.negotiate("chat", "")
		c, resp, err := b.dialWS("chat", "id="+url.QueryEscape(neg.ConnectionToken), nil)
		if err != nil {
			t.Fatalf("upgrade via b: got error %v (status %v), want a WebSocket to a", err, statusOf(resp))
		}
		c.handshake()
		clients = append(clients, c)
	}
	pipes := func() (parked, all int) {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "signalr.pipe(") {
				all++
				if strings.Contains(g, "netconn.(*ReadWaiter).Wait") {
					parked++
				}
			}
		}
		return parked, all
	}
	waitFor(t, "two parked tunnel goroutines per relayed socket", func() (bool, string) {
		parked, all := pipes()
		return parked == 2*n && all == 2*n, fmt.Sprintf("%d tunnel goroutines, %d parked", all, parked)
	})
	// Traffic both ways still flows.
	if r := clients[0].invoke("1", "SendToAll", "notify", "x"); r.Error != "" {
		t.Fatalf("invoke through the tunnel: got %s, want a result", r.raw)
	}
	for _, c := range clients {
		mustEqual(t, "delivery through the tunnel", c.next().raw, `{"type":1,"target":"notify","arguments":["x"]}`)
	}
	for _, c := range clients {
		_ = c.conn.Close()
	}
	waitFor(t, "the tunnels and the held connections to close", func() (bool, string) {
		_, all := pipes()
		held := a.srv.Counts()["signalr_websockets"]
		return all == 0 && held == 0, fmt.Sprintf("%d tunnel goroutines, %d WebSockets held by a", all, held)
	})
}

// A relayed upgrade that the holder refuses gets the holder's answer.
func TestForwardedWebSocketRefusal(t *testing.T) {
	t.Parallel()
	_, b := twoNodes(t)
	_, resp, err := b.dialWS("chat", "id="+url.QueryEscape("unknown~a"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("upgrade via b of a token a does not hold: got %v (status %v), want a's 404", err, statusOf(resp))
	}
}

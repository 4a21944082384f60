package node

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// The SignalR connection gauges: connections by transport, and how many
// WebSockets have parked their reader once idle (SignalR here; the native
// streams' count is tested in transport/stream).
func TestMetricsCountSignalRConnectionsAndParkedReaders(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	has := metricLines(t, n)
	if ok, why := has(`backplane_websockets_parked{endpoint="signalr"} 0`, `backplane_websockets_parked{endpoint="stream"} 0`); !ok {
		t.Fatal(why)
	}
	for _, user := range []string{"alice", "bob"} {
		dialHub(t, n, "chat", clientToken(t, user, time.Hour, nil))
	}
	// Idle for the default ParkIdleReaders (1 s), both readers park.
	waitFor(t, 10*time.Second, "two WebSockets counted, both parked", func() (bool, string) {
		return has(`backplane_signalr_connections{transport="websockets"} 2`, `backplane_websockets_parked{endpoint="signalr"} 2`)
	})
}

// The SignalR 2 connection gauge and /admin/status count a node's open
// WebSockets and waiting long polls; a closed WebSocket is no longer
// counted.
func TestMetricsCountSignalR2Connections(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	has := metricLines(t, n)

	polling := connectS2(t, n, jwt.MapClaims{"sub": "alice"})
	pq := url.Values{"transport": {"longPolling"}, "clientProtocol": {"2.1"}, "connectionData": {`[{"name":"chat"}]`},
		"connectionToken": {polling.token}, "access_token": {polling.accessTok}}
	pollCtx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	defer func() { stopPoll(); <-pollDone }()
	go func() { // waits: nothing comes
		defer close(pollDone)
		req, _ := http.NewRequestWithContext(pollCtx, http.MethodPost, n.url("/signalr/poll?"+pq.Encode()), strings.NewReader("messageId=0"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	socket := connectS2(t, n, jwt.MapClaims{"sub": "bob"}) // recorded by a long-polling connect
	q := url.Values{"transport": {"webSockets"}, "clientProtocol": {"2.1"}, "connectionData": {`[{"name":"chat"}]`},
		"connectionToken": {socket.token}, "access_token": {socket.accessTok}, "messageId": {"0"}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.HTTPAddr()+"/signalr/reconnect?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("SignalR 2 WebSocket: %v", err)
	}
	defer ws.Close()
	waitFor(t, 10*time.Second, "a waiting long poll and an open WebSocket counted", func() (bool, string) {
		return has(`backplane_signalr2_connections{transport="longpolling"} 1`, `backplane_signalr2_connections{transport="websockets"} 1`)
	})
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections["signalr2_websockets"] != 1 || st.Connections["signalr2_longpolling"] != 1 {
		t.Fatalf("/admin/status connections %v, want signalr2_websockets 1 and signalr2_longpolling 1", st.Connections)
	}
	ws.Close()
	waitFor(t, 10*time.Second, "the closed WebSocket no longer counted", func() (bool, string) {
		return has(`backplane_signalr2_connections{transport="websockets"} 0`)
	})
}

// metricLines returns a check that n's /metrics, read now, has each of
// lines as a whole line (false and the first missing one otherwise).
func metricLines(t *testing.T, n *testNode) func(lines ...string) (bool, string) {
	return func(lines ...string) (bool, string) {
		t.Helper()
		res := doHTTP(t, http.MethodGet, n.url("/metrics"), nil, nil)
		if res.status != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", res.status, res.body)
		}
		for _, line := range lines {
			if !strings.Contains(string(res.body), "\n"+line+"\n") {
				return false, "no line " + line
			}
		}
		return true, ""
	}
}

// A native SSE stream through the node's handlers waits without a
// goroutine: once idle its reader parks, and the SSE gauge says so.
func TestMetricsCountParkedSSEStreams(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	has := metricLines(t, n)
	if ok, why := has(`backplane_sse_parked{endpoint="stream"} 0`); !ok {
		t.Fatal(why)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url("/v1/hubs/chat/stream"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("stream: %s, Connection close %v; want 200, close-delimited", resp.Status, resp.Close)
	}
	// Idle for the default ParkIdleReaders (1 s), its reader parks.
	waitFor(t, 10*time.Second, "the SSE stream's reader parked", func() (bool, string) {
		return has(`backplane_sse_parked{endpoint="stream"} 1`)
	})
}

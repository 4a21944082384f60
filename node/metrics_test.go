package node

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The SignalR connection gauges: connections by transport, and how many
// WebSockets have parked their reader once idle (SignalR here; the native
// streams' count is tested in transport/stream).
func TestMetricsCountSignalRConnectionsAndParkedReaders(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	scrape := func() string {
		res := doHTTP(t, http.MethodGet, n.url("/metrics"), nil, nil)
		if res.status != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", res.status, res.body)
		}
		return string(res.body)
	}
	has := func(body string, lines ...string) (bool, string) {
		for _, line := range lines {
			if !strings.Contains(body, "\n"+line+"\n") {
				return false, "no line " + line
			}
		}
		return true, ""
	}
	if ok, why := has(scrape(), `backplane_websockets_parked{endpoint="signalr"} 0`, `backplane_websockets_parked{endpoint="stream"} 0`); !ok {
		t.Fatal(why)
	}
	for _, user := range []string{"alice", "bob"} {
		dialHub(t, n, "chat", clientToken(t, user, time.Hour, nil))
	}
	// Idle for the default ParkIdleReaders (1 s), both readers park.
	waitFor(t, 10*time.Second, "two WebSockets counted, both parked", func() (bool, string) {
		return has(scrape(), `backplane_signalr_connections{transport="websockets"} 2`, `backplane_websockets_parked{endpoint="signalr"} 2`)
	})
}

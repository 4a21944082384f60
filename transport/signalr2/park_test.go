package signalr2

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/netconn"
)

// An idle SignalR 2 WebSocket's reader parks: the socket still gets its
// messages, an invocation wakes the reader (and it parks again), and a
// client that hangs up while its reader is parked is noticed.
func TestIdleWebSocketsParkTheirReaders(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute, ParkIdleReaders: 20 * time.Millisecond})
	parked := func(want int64, what string) {
		t.Helper()
		testkit.WaitFor(t, 5*time.Second, what, func() (bool, string) {
			got := s.ParkedReaders()
			return got == want, fmt.Sprintf("%d parked, want %d", got, want)
		})
	}
	const n = 10
	sockets := make([]*websocket.Conn, n)
	for i := range sockets {
		sockets[i] = dialWS(t, negotiate(t, hs.URL, "", "chat"), "connect", nil)
		if init := readFrame(t, sockets[i]); string(init["S"]) != "1" {
			t.Fatalf("init frame %v", init)
		}
	}
	parked(n, "every reader to park")

	if err := sockets[0].WriteMessage(websocket.TextMessage, []byte(`{"H":"chat","M":"JoinGroup","A":["g"],"I":7}`)); err != nil {
		t.Fatal(err)
	}
	for { // the response and the groups token, in either order
		if m := readFrame(t, sockets[0]); string(m["I"]) == `"7"` {
			if m["E"] != nil {
				t.Fatalf("JoinGroup from a parked socket: %v", m)
			}
			break
		}
	}
	parked(n, "the woken reader to park again")

	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)})
	for i, ws := range sockets {
		for {
			m := readFrame(t, ws)
			if m["G"] != nil && (m["M"] == nil || string(m["M"]) == "[]") {
				continue // socket 0's groups token
			}
			if string(m["C"]) != `"`+formatCursor(idx)+`"` || !strings.Contains(string(m["M"]), `"M":"m"`) {
				t.Fatalf("socket %d: frame %v, want the message at %d", i, m, idx)
			}
			break
		}
	}

	for _, ws := range sockets[n/2:] {
		_ = ws.UnderlyingConn().Close() // hang up without a close frame
	}
	parked(n/2, "the hung-up sockets' readers to wake and end")
}

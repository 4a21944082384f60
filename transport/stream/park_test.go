package stream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/netconn"
)

// An idle WebSocket stream's reader parks: the stream still delivers,
// and a client that hangs up while its reader is parked is noticed.
func TestIdleWebSocketStreamsParkTheirReaders(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	f := fsmtest.Open(t, fsm.Config{})
	s := NewServer(f.FSM, Options{ParkIdleReaders: 20 * time.Millisecond})
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	const n = 20
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/hubs/chat/ws?after=0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		clients[i] = c
	}
	testkit.WaitFor(t, 5*time.Second, "every reader to park", func() (bool, string) {
		got := s.ParkedReaders()
		return got == n, fmt.Sprintf("%d parked", got)
	})

	cmd := fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`["x"]`)})
	f.Commit(time.Now().UnixNano(), cmd)
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		var m struct{ Target string }
		if err := json.Unmarshal(data, &m); err != nil || m.Target != "recv" {
			t.Fatalf("client %d: got %s, want the message", i, data)
		}
	}

	for _, c := range clients[n/2:] {
		_ = c.UnderlyingConn().Close() // hang up without a close frame
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up streams to end", func() (bool, string) {
		open, parked := s.Counts()["stream_ws"], s.ParkedReaders()
		return open == n/2 && parked == n/2, fmt.Sprintf("%d open, %d parked", open, parked)
	})
}

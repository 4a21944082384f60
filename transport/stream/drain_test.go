package stream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
)

// drainingServer serves the streams under a base context the test cancels
// with ErrDraining, as the node does when it stops.
func drainingServer(t *testing.T) (url string, publish func(), drain func()) {
	t.Helper()
	f := fsmtest.Open(t, fsm.Config{})
	mux := http.NewServeMux()
	base, cancel := context.WithCancelCause(context.Background())
	// The streams' context, as the node gives it (WebSocket streams
	// outlive their handler), and the HTTP server's, for the others.
	NewServer(f.FSM, Options{KeepAlive: time.Minute, Context: base}).Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(func() { cancel(errors.New("test over")); srv.Close() })
	publish = func() {
		f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`["x"]`)}))
	}
	return srv.URL, publish, func() { cancel(ErrDraining) }
}

// A stream ended by a draining node tells the reader its cursor: SSE with
// a last "event: draining", WebSocket with close code 1012.
func TestDrainingEndsStreamsWithTheirCursor(t *testing.T) {
	t.Run("sse", func(t *testing.T) {
		url, publish, drain := drainingServer(t)
		publish()
		publish()
		resp, err := http.Get(url + "/v1/hubs/chat/stream?after=0")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && sc.Text() != "id: 2" {
		}
		drain()
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got := strings.Join(lines, "\n")
		if !strings.Contains(got, "event: draining\ndata: {\"after\":2}") {
			t.Fatalf("the end of a drained SSE stream:\n%s\nwant event: draining with after 2", got)
		}
	})
	t.Run("ws", func(t *testing.T) {
		url, publish, drain := drainingServer(t)
		publish()
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/v1/hubs/chat/ws?after=0", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		drain()
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart || !strings.Contains(ce.Text, "resume after 1") {
			t.Fatalf("the end of a drained WebSocket stream: %v, want close 1012 naming cursor 1", err)
		}
	})
}

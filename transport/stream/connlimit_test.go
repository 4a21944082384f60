package stream

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/access"
)

func TestConnLimitCountsPerAddress(t *testing.T) {
	l := access.NewConnLimit(2)
	from := func(addr string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		return r
	}
	rel1, err1 := l.Acquire(from("127.0.0.1:1000"))
	_, err2 := l.Acquire(from("127.0.0.1:1001"))
	if err1 != nil || err2 != nil {
		t.Fatalf("two connections under a limit of 2: got errors %v, %v, want nil", err1, err2)
	}
	_, err := l.Acquire(from("127.0.0.1:1002"))
	if !errors.Is(err, access.ErrTooManyConnections) || !strings.Contains(err.Error(), "at most 2 concurrent connections per address") {
		t.Fatalf("third connection: got %v, want access.ErrTooManyConnections naming the limit", err)
	}
	if _, err := l.Acquire(from("[::1]:1000")); err != nil {
		t.Fatalf("another address: got %v, want nil", err)
	}
	rel1()
	rel1() // a second release does nothing
	if got := l.Count("127.0.0.1"); got != 1 {
		t.Fatalf("count after one release (twice): got %d, want 1", got)
	}
	if _, err := l.Acquire(from("127.0.0.1:1003")); err != nil {
		t.Fatalf("after a release: got %v, want nil", err)
	}
	if access.NewConnLimit(-1) != nil || access.NewConnLimit(0) != nil {
		t.Fatal("access.NewConnLimit(<=0): got a limit, want nil (no limit)")
	}
	var none *access.ConnLimit
	if rel, err := none.Acquire(from("127.0.0.1:1")); err != nil || rel == nil {
		t.Fatalf("nil limit: got %v, want a no-op release", err)
	}
}

// Native streams count while open: the next stream, poll or WebSocket
// from the address gets 429, and closing a stream frees its slot.
func TestNativeStreamsPerAddressLimit(t *testing.T) {
	f, err := fsm.New(fsm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	limit := access.NewConnLimit(3)
	mux := http.NewServeMux()
	NewServer(f, Options{KeepAlive: time.Second, ConnLimit: limit}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var open []*http.Response
	for i := range 3 {
		resp, err := http.Get(srv.URL + "/v1/hubs/chat/stream")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: got %v %v, want 200", i+1, resp, err)
		}
		open = append(open, resp)
	}
	defer func() {
		for _, resp := range open {
			resp.Body.Close()
		}
	}()
	for _, endpoint := range []string{"stream", "poll", "ws"} {
		got := openNative(t, srv.URL, endpoint, "timeout=1")
		if got.status != http.StatusTooManyRequests || !strings.Contains(got.body, "at most 3 concurrent connections per address") {
			t.Fatalf("%s past the limit: got %d %q, want 429 naming the limit", endpoint, got.status, got.body)
		}
	}
	open[0].Body.Close()
	open = open[1:]
	testkit.WaitUntil(t, 5*time.Second, "the closed stream frees its slot", func() bool { return limit.Count("127.0.0.1") == 2 })
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/hubs/chat/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket in the freed slot: %v", err)
	}
	if got := openNative(t, srv.URL, "poll", ""); got.status != http.StatusTooManyRequests {
		t.Fatalf("poll while the WebSocket holds the slot: got %d, want 429", got.status)
	}
	ws.Close()
	testkit.WaitUntil(t, 5*time.Second, "the closed WebSocket frees its slot", func() bool { return limit.Count("127.0.0.1") == 2 })
	resp, err := http.Get(srv.URL + "/v1/hubs/chat/poll")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poll in the freed slot: got %d %s, want 200", resp.StatusCode, b)
	}
	// A poll counts only while it waits.
	testkit.WaitUntil(t, 5*time.Second, "the answered poll frees its slot", func() bool { return limit.Count("127.0.0.1") == 2 })
}

package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// sseClient is an SSE stream read over a raw connection (no client
// goroutines, so that a test can count the server's).
type sseClient struct {
	conn   net.Conn
	resp   *http.Response
	events *testkit.SSEReader
}

// openSSEStream opens hub chat's SSE stream after the cursor, with HTTP
// version proto ("1.1" or "1.0").
func openSSEStream(t *testing.T, base, proto string, after uint64) *sseClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	path := fmt.Sprintf("/v1/hubs/chat/stream?after=%d", after)
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/%s\r\nHost: test\r\n\r\n", path, proto); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %v", resp.Status, resp.Header)
	}
	// Close-delimited: the stream writes its events as they are.
	if len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("stream response: Transfer-Encoding %v, Connection close %v; want no chunking and close", resp.TransferEncoding, resp.Close)
	}
	return &sseClient{conn: conn, resp: resp, events: testkit.NewSSEReader(resp.Body)}
}

// next reads the next event that is not only comments.
func (c *sseClient) next(t *testing.T) testkit.Event {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		ev, err := c.events.Next()
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if ev.ID != "" || ev.Event != "" || ev.Data != "" {
			return ev
		}
	}
}

func targetOf(t *testing.T, ev testkit.Event) string {
	t.Helper()
	var m struct{ Target string }
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	return m.Target
}

// TestIdleSSEStreamsHoldNoGoroutine: over HTTP/1.1 an SSE stream that has
// sent everything waits with no goroutine (its reader parked); the next
// message of its hub (not another hub's) reaches every stream, a client
// that hangs up ends its stream and gives back its place, and a draining
// server tells the others their cursor before it closes them.
func TestIdleSSEStreamsHoldNoGoroutine(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	limit := access.NewConnLimit(100)
	s, f, url := wsStreamServer(t, Options{ParkIdleReaders: 20 * time.Millisecond, Context: ctx, ConnLimit: limit})
	publish := func(hub, target string) uint64 {
		f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: target, Arguments: []byte(`["x"]`)}))
		return f.Index // a message's index is its entry's
	}
	publish("chat", "before") // index 1: each stream starts by sending it

	const n = 30
	before := runtime.NumGoroutine()
	clients := make([]*sseClient, n)
	for i := range clients {
		clients[i] = openSSEStream(t, url, "1.1", 0)
		if ev := clients[i].next(t); ev.ID != "1" || targetOf(t, ev) != "before" {
			t.Fatalf("client %d: first event %+v, want message 1", i, ev)
		}
	}
	testkit.WaitParked(t, "every stream to wait without a goroutine", s.ParkedSSE, n, before)

	publish("other", "elsewhere") // another hub: nothing to send
	idx := publish("chat", "after")
	for i, c := range clients {
		if ev := c.next(t); ev.ID != fmt.Sprint(idx) || targetOf(t, ev) != "after" {
			t.Fatalf("client %d: next event %+v, want message %d (and nothing of hub other)", i, ev, idx)
		}
	}
	testkit.WaitParked(t, "every stream to wait again without a goroutine", s.ParkedSSE, n, before)

	for _, c := range clients[n/2:] {
		_ = c.conn.Close()
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up streams to end and give back their places", func() (bool, string) {
		open, held := s.Counts()["stream_sse"], limit.Count("127.0.0.1")
		return open == n/2 && held == n/2, fmt.Sprintf("%d open, %d places held", open, held)
	})

	cancel(ErrDraining) // the node drains: every stream tells its cursor, then ends
	for i, c := range clients[:n/2] {
		ev := c.next(t)
		if ev.Event != "draining" || ev.Data != fmt.Sprintf(`{"after":%d}`, idx) {
			t.Fatalf("client %d after the drain: %+v, want event draining after %d", i, ev, idx)
		}
		if _, err := c.events.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d after the draining event: %v, want the end of the stream", i, err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "every stream to end", func() (bool, string) {
		open, parked, held := s.Counts()["stream_sse"], s.ParkedSSE(), limit.Count("127.0.0.1")
		return open == 0 && parked == 0 && held == 0, fmt.Sprintf("%d open, %d parked, %d places held", open, parked, held)
	})
}

// TestSSEStreamOverHTTP10: an HTTP/1.0 client gets the same
// close-delimited stream.
func TestSSEStreamOverHTTP10(t *testing.T) {
	_, f, url := wsStreamServer(t, Options{})
	c := openSSEStream(t, url, "1.0", 0)
	f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)}))
	idx := f.Index
	if ev := c.next(t); ev.ID != fmt.Sprint(idx) || targetOf(t, ev) != "m" {
		t.Fatalf("event %+v, want message %d", ev, idx)
	}
}

// TestSSEStreamOverHTTP2: HTTP/2 cannot hand its connection over; the
// stream is served on the request's goroutine and delivers the same.
func TestSSEStreamOverHTTP2(t *testing.T) {
	f := fsmtest.Open(t, fsm.Config{})
	s := NewServer(f.FSM, Options{})
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/hubs/chat/stream?after=0", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}
	f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)}))
	idx := f.Index
	events := testkit.NewSSEReader(resp.Body)
	for {
		ev, err := events.Next()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if ev.ID == "" {
			continue // the first comment
		}
		if ev.ID != fmt.Sprint(idx) || targetOf(t, ev) != "m" {
			t.Fatalf("event %+v, want message %d", ev, idx)
		}
		break
	}
	if got := s.Counts()["stream_sse"]; got != 1 {
		t.Fatalf("%d SSE streams counted, want 1", got)
	}
	if s.ParkedSSE() != 0 {
		t.Fatalf("an HTTP/2 stream's reader parked")
	}
}

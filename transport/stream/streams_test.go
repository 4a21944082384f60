package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/netconn"
)

// streamsUnderTest serves the native streams over a real store, with a
// short keep-alive; publish commits a broadcast to hub "chat".
func streamsUnderTest(t *testing.T) (url string, publish func()) {
	t.Helper()
	f := fsmtest.Open(t, fsm.Config{})
	mux := http.NewServeMux()
	NewServer(f.FSM, Options{KeepAlive: 100 * time.Millisecond}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	publish = func() {
		cmd := fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`["x"]`)})
		f.Commit(time.Now().UnixNano(), cmd)
	}
	return srv.URL, publish
}

// An SSE stream pings while idle and also while messages flow (once per
// keep-alive period), and delivers every message with its index as id.
func TestSSEPingsAndDelivers(t *testing.T) {
	url, publish := streamsUnderTest(t)
	resp, err := http.Get(url + "/v1/hubs/chat/stream?after=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(want func(string) bool, what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended, want %s", what)
				}
				if want(l) {
					return
				}
			case <-deadline:
				t.Fatalf("got no %s within 5s", what)
			}
		}
	}
	next(func(l string) bool { return l == ": ping" }, "ping on an idle stream")
	// Messages every 10 ms for 400 ms: every one arrives, and the stream
	// still pings (the keep-alive period does not restart per message).
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		for range 40 {
			publish()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	ids, pings := 0, 0
	for ids < 40 {
		select {
		case l := <-lines:
			switch {
			case strings.HasPrefix(l, "id: "):
				ids++
				if l != "id: "+strconv.Itoa(ids) {
					t.Fatalf("got %q, want id %d", l, ids)
				}
			case l == ": ping":
				pings++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 40 messages within 5s", ids)
		}
	}
	<-stop
	if pings == 0 {
		t.Fatal("got no ping while messages flowed for 400 ms, want one per 100 ms keep-alive period")
	}
}

// A native WebSocket stream pings with WebSocket Pings while idle, and
// delivers messages.
func TestNativeWebSocketPingsAndDelivers(t *testing.T) {
	url, publish := streamsUnderTest(t)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/v1/hubs/chat/ws?after=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pinged := make(chan struct{}, 10)
	conn.SetPingHandler(func(string) error {
		pinged <- struct{}{}
		return nil
	})
	got := make(chan string, 10)
	go func() {
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			got <- string(data)
		}
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("got no Ping on an idle stream within 5s")
	}
	publish()
	select {
	case m := <-got:
		if !strings.HasPrefix(m, `{"index":1,`) {
			t.Fatalf("got %s, want message 1", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("got no message within 5s")
	}
}

// An idle WebSocket stream's reader parks: the stream still delivers,
// and a client that hangs up while its reader is parked is noticed.
func TestIdleWebSocketStreamsParkTheirReaders(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	s, f, url := wsStreamServer(t, Options{ParkIdleReaders: 20 * time.Millisecond})
	const n = 20
	clients := openWSStreams(t, url, n)
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

// An idle native WebSocket stream holds no goroutine: its writer ends once
// it has sent everything (the store calls it back at its hub's next
// change) and its reader parks. Idle streams still get their hub's
// messages, hang-ups are noticed, and the server's context ends them all
// with a close frame.
func TestIdleWebSocketStreamsHoldNoGoroutine(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, f, url := wsStreamServer(t, Options{ParkIdleReaders: 20 * time.Millisecond, Context: ctx})
	publish := func(hub, target string) {
		f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: target, Arguments: []byte(`["x"]`)}))
	}
	publish("chat", "before") // index 1: each stream starts by sending it

	const n = 30
	before := runtime.NumGoroutine()
	clients := openWSStreams(t, url, n)
	readTarget := func(i int) string {
		_ = clients[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := clients[i].ReadMessage()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		var m struct{ Target string }
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("client %d: got %s, want a message", i, data)
		}
		return m.Target
	}
	for i := range clients {
		if got := readTarget(i); got != "before" {
			t.Fatalf("client %d: first message %q, want before", i, got)
		}
	}
	testkit.WaitParked(t, "every stream to wait without a goroutine", s.ParkedReaders, n, before)

	publish("other", "elsewhere") // another hub: nothing to send
	publish("chat", "after")
	for i := range clients {
		if got := readTarget(i); got != "after" {
			t.Fatalf("client %d: next message %q, want after (and nothing of hub other)", i, got)
		}
	}
	testkit.WaitParked(t, "every stream to wait again without a goroutine", s.ParkedReaders, n, before)

	for _, c := range clients[n/2:] {
		_ = c.UnderlyingConn().Close() // hang up without a close frame
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up streams to end", func() (bool, string) {
		open := s.Counts()["stream_ws"]
		return open == n/2, fmt.Sprintf("%d open", open)
	})

	cancel() // the server's context: every stream ends, telling its client
	for i, c := range clients[:n/2] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("client %d after the server's context ended: got %v, want close 1001", i, err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "every stream to end", func() (bool, string) {
		open, parked := s.Counts()["stream_ws"], s.ParkedReaders()
		return open == 0 && parked == 0, fmt.Sprintf("%d open, %d parked", open, parked)
	})
}

// Native WebSocket streams under a stream of commits, while some clients
// hang up: the writer that a change starts, and the one already running
// when a change comes, hand over without losing a wake-up, so every
// remaining client gets every message once, in order.
func TestWebSocketStreamsMissNoWakeUp(t *testing.T) {
	s, f, url := wsStreamServer(t, Options{ParkIdleReaders: time.Millisecond})
	const streams, messages = 12, 300
	clients := openWSStreams(t, url, streams)
	go func() {
		for i := range messages {
			hub := "chat"
			if i%3 == 0 {
				hub = "other" // changes the stream must sleep through
			}
			f.Commit(time.Now().UnixNano(), fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)}))
			if i == messages/2 {
				for _, c := range clients[streams-3:] {
					_ = c.UnderlyingConn().Close()
				}
			}
		}
	}()
	var want []uint64
	for i := range messages {
		if i%3 != 0 {
			want = append(want, uint64(i+1))
		}
	}
	for i, c := range clients[:streams-3] {
		var got []uint64
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(got) < len(want) {
			_, data, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("client %d after %d messages: %v", i, len(got), err)
			}
			var m struct{ Index uint64 }
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatalf("client %d: %s: %v", i, data, err)
			}
			got = append(got, m.Index)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("client %d: got indexes %v, want %v", i, got, want)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up streams to end", func() (bool, string) {
		open := s.Counts()["stream_ws"]
		return open == streams-3, fmt.Sprintf("%d open", open)
	})
}

// wsStreamServer serves the native streams with opts over a real store.
func wsStreamServer(t *testing.T, opts Options) (*Server, *fsmtest.Applier, string) {
	t.Helper()
	f := fsmtest.Open(t, fsm.Config{})
	s := NewServer(f.FSM, opts)
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, f, srv.URL
}

// openWSStreams opens n WebSocket streams of hub chat from the start.
func openWSStreams(t *testing.T, url string, n int) []*websocket.Conn {
	t.Helper()
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/v1/hubs/chat/ws?after=0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		clients[i] = c
	}
	return clients
}

package stream

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
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

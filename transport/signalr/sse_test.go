package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

func TestSSEStream(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken) // reads ":\r\n" before any send
	mustEqual(t, "Cache-Control", c.resp.Header.Get("Cache-Control"), "no-cache, no-store")

	ts.post("chat", n.ConnectionToken, handshakeJSON)
	mustEqual(t, "handshake event", c.event().raw, "data: {}"+rs+"\r\n\r\n")

	// Two records in one POST.
	ts.post("chat", n.ConnectionToken, invocation("1", "SendToAll", "notify", "line1\nline2")+`{"type":6}`+rs)
	var got []record
	for len(got) < 2 {
		e := c.event()
		if !strings.HasSuffix(e.raw, "\r\n\r\n") || !strings.HasPrefix(e.raw, "data: ") {
			t.Fatalf("event: got %q, want data lines ending in a blank line", e.raw)
		}
		got = append(got, parseRecords(t, e.data)...)
	}
	var sawCompletion, sawDelivery bool
	for _, r := range got {
		switch {
		case r.Type == 3 && r.InvocationID == "1" && r.Error == "" && len(r.Result) > 0:
			sawCompletion = true
		case r.Type == 1 && r.raw == `{"type":1,"target":"notify","arguments":["line1\nline2"]}`:
			sawDelivery = true
		}
	}
	if !sawCompletion || !sawDelivery {
		t.Fatalf("records: got %+v, want the Completion of 1 and the notify delivery", got)
	}
}

func TestSSEKeepAlive(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.KeepAlive = 200 * time.Millisecond }))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, handshakeJSON)
	mustEqual(t, "handshake event", c.event().data, "{}"+rs)
	mustEqual(t, "keep-alive event", c.event().raw, `data: {"type":6}`+rs+"\r\n\r\n")
}

func TestSSERejectsMessagePack(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, `{"protocol":"messagepack","version":1}`+rs)
	events := c.ended()
	if len(events) != 1 || !strings.HasPrefix(events[0].data, `{"error":"Cannot use the 'messagepack' protocol on the current transport`) {
		t.Fatalf("events: got %+v, want one handshake error", events)
	}
	mustEqual(t, "POST after the handshake error", ts.status(http.MethodPost, ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), []byte(handshakeJSON), nil), http.StatusNotFound)
}

func TestSSEEndOfRequestEndsConnection(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, handshakeJSON)
	mustEqual(t, "handshake event", c.event().data, "{}"+rs)
	if !ts.cluster.recorded(t, n.ConnectionID) {
		t.Fatal("after the handshake: got the connection unrecorded, want it in ConnectionsOn")
	}
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	mustEqual(t, "second SSE GET", ts.status(http.MethodGet, u, nil, http.Header{"Accept": {"text/event-stream"}}), http.StatusConflict)

	c.cancel() // the client closes its EventSource
	waitFor(t, "the connection to end", func() (bool, string) {
		return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
	})
	mustEqual(t, "POST after the stream ended", ts.status(http.MethodPost, u, []byte(`{"type":7}`+rs), nil), http.StatusNotFound)
	waitFor(t, "the close to commit", func() (bool, string) {
		return !ts.cluster.recorded(t, n.ConnectionID), "still in ConnectionsOn"
	})
}

// TestEndDuringHandshakeLeavesNoRecord ends an SSE connection while its
// handshake is recording the connection: once both are done, the
// connection is neither recorded in the replicated state nor held.
func TestEndDuringHandshakeLeavesNoRecord(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken)

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ts.cluster.setHook(func(cmds []fsm.Command) {
		if cmds[0].Type() == fsm.CmdConnOpen {
			once.Do(func() { close(entered); <-release })
		}
	})
	posted := make(chan error, 1)
	go func() {
		resp, err := http.Post(ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), "text/plain", strings.NewReader(handshakeJSON))
		if err == nil {
			resp.Body.Close()
		}
		posted <- err
	}()
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("handshake: got no CmdConnOpen proposed, want one")
	}
	c.cancel() // the stream ends while the open is being committed
	waitFor(t, "the connection to end", func() (bool, string) {
		return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
	})
	close(release)
	if err := <-posted; err != nil {
		t.Fatalf("handshake POST: got error %v, want a response", err)
	}
	waitFor(t, "the connection to leave the replicated state", func() (bool, string) {
		return !ts.cluster.recorded(t, n.ConnectionID), "still in ConnectionsOn"
	})
	ts.srv.mu.RLock()
	_, held := ts.srv.byID[n.ConnectionID]
	ts.srv.mu.RUnlock()
	if held {
		t.Fatal("ended connection: got it indexed for delivery, want it gone")
	}
}

// The first keep-alive comes KeepAlive after the last write, as on
// WebSockets and in ASP.NET (it came up to a third of KeepAlive late).
func TestSSEFirstKeepAliveOnTime(t *testing.T) {
	t.Parallel()
	keepAlive := time.Second
	ts := newTestServer(t, testOptions(func(o *Options) { o.KeepAlive = keepAlive }))
	n := ts.negotiate("chat", "")
	c := ts.openSSE("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, handshakeJSON)
	mustEqual(t, "handshake event", c.event().data, "{}"+rs)
	start := time.Now()
	mustEqual(t, "keep-alive event", c.event().data, `{"type":6}`+rs)
	if elapsed := time.Since(start); elapsed < keepAlive*9/10 || elapsed > keepAlive*5/4 {
		t.Fatalf("first keep-alive: got it %s after the handshake, want %s", elapsed, keepAlive)
	}
}

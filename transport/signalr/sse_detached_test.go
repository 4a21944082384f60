package signalr

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/netconn"
)

// rawSSE is an SSE transport read over a raw socket (no client
// goroutines, so that a test can count the server's).
type rawSSE struct {
	conn  net.Conn
	lines *bufio.Reader
}

// openRawSSE opens the SSE transport of a negotiated connection and reads
// the opening comment.
func (ts *testServer) openRawSSE(hub, token string) *rawSSE {
	ts.t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { _ = nc.Close() })
	if _, err := fmt.Fprintf(nc, "GET /hubs/%s?id=%s HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n", hub, url.QueryEscape(token)); err != nil {
		ts.t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		ts.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 0 || !resp.Close {
		ts.t.Fatalf("SSE GET: %s, Transfer-Encoding %v, close %v; want 200, close-delimited", resp.Status, resp.TransferEncoding, resp.Close)
	}
	c := &rawSSE{conn: nc, lines: bufio.NewReader(resp.Body)}
	if l, err := c.lines.ReadString('\n'); err != nil || l != ":\r\n" {
		ts.t.Fatalf("SSE opening: %q, %v; want the comment", l, err)
	}
	return c
}

// event reads the next event's data (one data line: JSON records).
func (c *rawSSE) event(t *testing.T) string {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	var data string
	for {
		l, err := c.lines.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		if l == "" && data != "" {
			return data
		}
		data += strings.TrimPrefix(l, "data: ")
	}
}

// rawPost sends a client message on a connection of its own, closed
// after the answer (no client goroutines stay behind).
func (ts *testServer) rawPost(hub, token, data string) {
	ts.t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		ts.t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "POST /hubs/%s?id=%s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", hub, url.QueryEscape(token), len(data), data)
	_ = nc.SetReadDeadline(time.Now().Add(waitTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("POST %q: %v %v", data, resp, err)
	}
}

// Over HTTP/1.1 an idle SSE transport holds no goroutine on the server:
// it is a socket whose reader parks and whose writer runs only while
// records are queued (a writer that streamed lingers until the reaper
// retires it, a second later). Parked streams get their messages, a
// client that hangs up ends its connection, and a stopping server sends
// the rest its Close. (TestSSEFirstKeepAliveOnTime times the keep-alive.)
func TestIdleSSEStreamsHoldNoGoroutine(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	ts := newTestServer(t, testOptions(func(o *Options) { o.ParkIdleReaders, o.ClientTimeout = 20*time.Millisecond, time.Minute }))
	const n = 20
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	streams := make([]*rawSSE, n)
	tokens := make([]string, n)
	for i := range streams {
		tokens[i] = ts.negotiate("chat", "").ConnectionToken
		streams[i] = ts.openRawSSE("chat", tokens[i])
		ts.rawPost("chat", tokens[i], handshakeJSON)
		mustEqual(t, "handshake event", streams[i].event(t), "{}"+rs)
	}
	http.DefaultClient.CloseIdleConnections()
	testkit.WaitParked(t, "every stream to wait without a goroutine", ts.srv.ParkedSSE, n, before)

	ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "notify", Arguments: []byte(`["x"]`)})
	for i, c := range streams {
		mustEqual(t, fmt.Sprintf("stream %d's message", i), c.event(t), `{"type":1,"target":"notify","arguments":["x"]}`+rs)
	}
	testkit.WaitParked(t, "every stream to wait again without a goroutine", ts.srv.ParkedSSE, n, before)

	for _, c := range streams[n/2:] {
		_ = c.conn.Close()
	}
	waitFor(t, "the hung-up streams' connections to end", func() (bool, string) {
		held := 0
		for _, tok := range tokens[n/2:] {
			if ts.srv.lookup(tok) != nil {
				held++
			}
		}
		return held == 0, fmt.Sprintf("%d still held", held)
	})

	ts.srv.Stop()
	for i, c := range streams[:n/2] {
		mustEqual(t, fmt.Sprintf("stream %d after Stop", i), c.event(t), `{"type":7,"allowReconnect":true}`+rs)
		if _, err := c.lines.ReadString('\n'); err == nil {
			t.Fatalf("stream %d: more after its Close, want the end of the stream", i)
		}
	}
	waitFor(t, "every stream's reader to be done", func() (bool, string) {
		return ts.srv.ParkedSSE() == 0, fmt.Sprintf("%d parked", ts.srv.ParkedSSE())
	})
}

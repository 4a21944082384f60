package signalr2

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/access"
)

// TestWebSocketReauthenticatesWithTheKeptHeaders: a WebSocket's send to a
// hub it did not connect to is authenticated again with what the socket
// kept of its upgrade request: with AuthHeaders, those headers only (and
// the send still passes), without, every header.
func TestWebSocketReauthenticatesWithTheKeptHeaders(t *testing.T) {
	for _, tt := range []struct {
		name        string
		authHeaders []string
		wantOnly    bool // the re-authentication sees X-Test-User alone
	}{
		{"AuthHeaders set", []string{"x-test-user"}, true},
		{"AuthHeaders nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCluster(t, fsm.DefaultRetention)
			var mu sync.Mutex
			var seen http.Header
			auth := func(r *http.Request, hubs []string) (Identity, error) {
				user := r.Header.Get("X-Test-User")
				if slices.Contains(hubs, "elsewhere") {
					mu.Lock()
					seen = r.Header.Clone()
					mu.Unlock()
					if user != "ann" {
						return Identity{}, ErrForbidden
					}
				}
				return Identity{UserID: user}, nil
			}
			_, hs := newTestServer(t, tc, Options{Authenticate: auth, AuthHeaders: tt.authHeaders})
			ws := connectWS(t, negotiate(t, hs.URL, "ann", "chat"))
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"elsewhere","M":"SendToAll","A":["m"],"I":9}`)); err != nil {
				t.Fatal(err)
			}
			if r := readFrame(t, ws); string(r["I"]) != `"9"` || r["E"] != nil || r["R"] == nil {
				t.Fatalf("send to another hub = %v, want a message index", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen == nil {
				t.Fatal("the send to another hub was not authenticated again")
			}
			if got := seen.Get("X-Test-User"); got != "ann" {
				t.Fatalf("re-authentication saw X-Test-User %q, want ann", got)
			}
			if only := len(seen) == 1; only != tt.wantOnly {
				t.Fatalf("re-authentication saw headers %v; want X-Test-User alone: %v", seen, tt.wantOnly)
			}
		})
	}
}

// TestWebSocketInvocationEndsWithTheSocket: an invocation in progress
// when the socket ends is cancelled (its context ends): at the client's
// token's expiry, and when the server stops. (A hang-up is noticed once
// the invocation returns: the reader runs it.)
func TestWebSocketInvocationEndsWithTheSocket(t *testing.T) {
	for _, end := range []string{"token expires", "server stops"} {
		t.Run(end, func(t *testing.T) {
			tc := newTestCluster(t, fsm.DefaultRetention)
			app := newFakeApp() // its release is never closed: block ends only when cancelled
			opts := Options{Application: app, KeepAlive: time.Minute}
			if end == "token expires" {
				expires := time.Now().Add(time.Second)
				opts.Authenticate = func(r *http.Request, hubs []string) (Identity, error) {
					id, err := testAuth(r, hubs)
					id.Expires = expires
					return id, err
				}
			}
			s, hs := newTestServer(t, tc, opts)
			ws := connectWS(t, negotiate(t, hs.URL, "", "chat"))
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"chat","M":"block","A":[],"I":1}`)); err != nil {
				t.Fatal(err)
			}
			running := func() int {
				app.mu.Lock()
				defer app.mu.Unlock()
				return app.running
			}
			testkit.WaitUntil(t, 10*time.Second, "the invocation to run", func() bool { return running() == 1 })
			if end == "server stops" {
				s.Stop()
			}
			testkit.WaitUntil(t, 10*time.Second, "the invocation to be cancelled", func() bool { return running() == 0 })
			if _, calls, _ := app.snapshot(); len(calls) != 1 {
				t.Fatalf("the application saw %q, want the one invocation", calls)
			}
		})
	}
}

// sseConn is a SignalR 2 SSE connection read over a raw socket (no client
// goroutines, so that a test can count the server's).
type sseConn struct {
	conn  net.Conn
	lines *bufio.Reader
}

// openSSE connects c over serverSentEvents and reads "data: initialized"
// and the init envelope.
func openSSE(t *testing.T, base string, c *client) *sseConn {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	q := c.query(url.Values{"transport": {transportSSE}}).Encode()
	if _, err := fmt.Fprintf(nc, "GET /signalr/connect?%s HTTP/1.1\r\nHost: test\r\nX-Test-User: %s\r\n\r\n", q, c.user); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("connect: %s, Transfer-Encoding %v, close %v; want 200, close-delimited", resp.Status, resp.TransferEncoding, resp.Close)
	}
	sc := &sseConn{conn: nc, lines: bufio.NewReader(resp.Body)}
	if l := sc.next(t); l != "initialized" {
		t.Fatalf("first event %q, want initialized", l)
	}
	if init := decodeEnvelope(t, sc.next(t)); init.S != 1 {
		t.Fatalf("init envelope %+v", init)
	}
	return sc
}

// next returns the next event's data (keep-alives included).
func (sc *sseConn) next(t *testing.T) string {
	t.Helper()
	_ = sc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return sc.nextBody(t)
}

// nextBody is next without a read deadline (for a response body).
func (sc *sseConn) nextBody(t *testing.T) string {
	t.Helper()
	for {
		l, err := sc.lines.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if l = strings.TrimSuffix(l, "\n"); l != "" {
			return strings.TrimPrefix(l, "data: ")
		}
	}
}

// TestIdleSSEStreamsHoldNoGoroutine: over HTTP/1.1 a SignalR 2 SSE stream
// that has sent everything waits with no goroutine (its reader parked);
// its hub's next message (not another hub's) reaches every stream, a
// client that hangs up ends its stream and gives back its place, and a
// stopping server tells the others to reconnect.
func TestIdleSSEStreamsHoldNoGoroutine(t *testing.T) {
	limit := access.NewConnLimit(100)
	tc, s, hs := newParkingServer(t, Options{Draining: errors.New("draining"), ConnLimit: limit})
	const n = 20
	clients := make([]*client, n)
	streams := make([]*sseConn, n)
	before := runtime.NumGoroutine()
	for i := range streams {
		clients[i] = negotiate(t, hs.URL, "", "news")
		streams[i] = openSSE(t, hs.URL, clients[i])
	}
	testkit.WaitParked(t, "every stream to wait without a goroutine", s.ParkedSSE, n, before)

	tc.publish(t, &fsm.Publish{Hub: "other", Audience: fsm.ToAll, Target: "elsewhere", Arguments: []byte(`[1]`)})
	idx := tc.publish(t, &fsm.Publish{Hub: "news", Audience: fsm.ToAll, Target: "headline", Arguments: []byte(`[1]`)})
	for i, sc := range streams {
		if e := decodeEnvelope(t, sc.next(t)); e.C != formatCursor(idx) || !slices.Equal(calls(e), []string{`news.headline[1]`}) {
			t.Fatalf("stream %d: %+v, want the headline at %d (and nothing of hub other)", i, e, idx)
		}
	}
	testkit.WaitParked(t, "every stream to wait again without a goroutine", s.ParkedSSE, n, before)

	for _, sc := range streams[n/2:] {
		_ = sc.conn.Close()
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up streams to end and give back their places", func() (bool, string) {
		open, held := s.Counts()["signalr2_sse"], limit.Count("127.0.0.1")
		return open == n/2 && held == n/2, fmt.Sprintf("%d open, %d places held", open, held)
	})

	s.Stop()
	for i, sc := range streams[:n/2] {
		if e := decodeEnvelope(t, sc.next(t)); e.T != 1 {
			t.Fatalf("stream %d after Stop: %+v, want T 1 (reconnect)", i, e)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "every stream to end", func() (bool, string) {
		open, parked := s.Counts()["signalr2_sse"], s.ParkedSSE()
		return open == 0 && parked == 0, fmt.Sprintf("%d open, %d parked", open, parked)
	})
}

// TestSSEOverHTTP2: HTTP/2 cannot hand its connection over; the stream is
// served on the request's goroutine and delivers the same.
func TestSSEOverHTTP2(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, err := NewServer(tc, Options{Secrets: [][]byte{testSecret}, Authenticate: testAuth})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/signalr/", s)
	hs := httptest.NewUnstartedServer(mux)
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(func() {
		hs.Close()
		s.Stop()
	})
	c := &client{t: t, base: hs.URL, data: `[{"name":"chat"}]`}
	nr, err := hs.Client().Get(hs.URL + "/signalr/negotiate?" + c.query(url.Values{"clientProtocol": {"2.1"}}).Encode())
	if err != nil {
		t.Fatal(err)
	}
	var n negotiateResponse
	err = json.NewDecoder(nr.Body).Decode(&n)
	nr.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.token = n.ConnectionToken
	req, err := http.NewRequest(http.MethodGet, hs.URL+"/signalr/connect?"+c.query(url.Values{"transport": {transportSSE}}).Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("connect: %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}
	sc := &sseConn{lines: bufio.NewReader(resp.Body)}
	if l := sc.nextBody(t); l != "initialized" {
		t.Fatalf("first event %q", l)
	}
	sc.nextBody(t) // the init envelope
	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)})
	if e := decodeEnvelope(t, sc.nextBody(t)); e.C != formatCursor(idx) || !slices.Equal(calls(e), []string{`chat.m[1]`}) {
		t.Fatalf("%+v, want the message at %d", e, idx)
	}
	if n := s.Counts()["signalr2_sse"]; n != 1 || s.ParkedSSE() != 0 {
		t.Fatalf("%d SSE streams counted, %d parked; want 1 served on its goroutine", n, s.ParkedSSE())
	}
}

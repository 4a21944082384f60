package signalr2

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/access"
)

// TestServerSentEvents: "data: initialized", the init envelope, the
// messages as they are committed, and "data: {}" keep-alives.
func TestServerSentEvents(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: 50 * time.Millisecond})
	c := negotiate(t, hs.URL, "", "chat")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := c.doResp(http.MethodGet, "connect", url.Values{"transport": {transportSSE}}, nil, ctx)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("connect = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		for lines.Scan() {
			if l := lines.Text(); l != "" {
				return l
			}
		}
		t.Fatalf("the stream ended: %v", lines.Err())
		return ""
	}
	if l := next(); l != "data: initialized" {
		t.Fatalf("first event %q, want data: initialized", l)
	}
	if init := decodeEnvelope(t, strings.TrimPrefix(next(), "data: ")); init.S != 1 || init.C != "0" {
		t.Fatalf("init envelope %+v, want S 1 C 0", init)
	}
	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`["hi"]`)})
	keepAlives := 0
	for {
		l := next()
		if l == "data: {}" {
			keepAlives++
			continue
		}
		e := decodeEnvelope(t, strings.TrimPrefix(l, "data: "))
		if !slices.Equal(calls(e), []string{`chat.m["hi"]`}) || e.C != formatCursor(idx) {
			t.Fatalf("envelope %+v, want the message at %d", e, idx)
		}
		break
	}
	for keepAlives < 2 {
		if l := next(); l != "data: {}" {
			t.Fatalf("idle stream wrote %q, want keep-alives", l)
		}
		keepAlives++
	}
}

// TestWebSocket: the init frame, hub invocations in frames answered in
// frames, the groups token when groups change, messages, and the end of
// the stream with "E" once the connection is closed in the cluster.
func TestWebSocket(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "ann", "chat")
	ws := dialWS(t, c, "connect", nil)
	read := func() map[string]json.RawMessage {
		t.Helper()
		return readFrame(t, ws)
	}
	if init := read(); string(init["S"]) != "1" || string(init["C"]) != `"0"` {
		t.Fatalf("init frame %v", init)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"chat","M":"JoinGroup","A":["g"],"I":7}`)); err != nil {
		t.Fatal(err)
	}
	// The response and the groups token arrive, in either order.
	var sawResponse, sawGroups bool
	for !sawResponse || !sawGroups {
		m := read()
		switch {
		case string(m["I"]) == `"7"` && m["E"] == nil:
			sawResponse = true
		case m["G"] != nil:
			sawGroups = true
		default:
			t.Fatalf("unexpected frame %v", m)
		}
	}
	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"g"}, Target: "m", Arguments: []byte(`[1]`)})
	if m := read(); string(m["C"]) != `"`+formatCursor(idx)+`"` || !strings.Contains(string(m["M"]), `"M":"m"`) {
		t.Fatalf("frame %v, want the group message at %d", m, idx)
	}
	// A REST-style close (no holder named) ends the stream with E.
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: "chat", ConnID: c.id})); err != nil {
		t.Fatal(err)
	}
	if m := read(); !strings.Contains(string(m["E"]), "closed by the server") {
		t.Fatalf("frame %v, want E", m)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("the socket stays open after E")
	}
}

// TestStreamEndsWhenAnotherNodeTakesTheConnection: a reconnect elsewhere
// makes another node the holder; the old stream ends without E (the
// client is already on the new one).
func TestStreamEndsWhenAnotherNodeTakesTheConnection(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "", "chat")
	ws := dialWS(t, c, "connect", nil)
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: c.id, NodeID: "node-b"})); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if strings.Contains(string(data), `"E"`) {
			t.Fatalf("frame %s: a moved connection's old stream must not stop the client", data)
		}
	}
}

// TestWebSocketReconnectResumesFromMessageID: /reconnect streams what the
// connection missed after its messageId, with no init frame.
func TestWebSocketReconnectResumesFromMessageID(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "", "chat")
	c.connectLP() // recorded; the socket comes later
	var want []uint64
	for i := 0; i < 3; i++ {
		want = append(want, tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToConnections, Names: []string{c.id}, Target: "m"}))
	}
	ws := dialWS(t, c, "reconnect", url.Values{"messageId": {formatCursor(want[0])}})
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEnvelope(t, string(data))
	if e.S != 0 || len(e.M) != 2 || e.C != formatCursor(want[2]) {
		t.Fatalf("first frame after reconnect %s, want messages %d and %d without S", data, want[1], want[2])
	}
}

// readFrame reads one frame of ws as a JSON object.
func readFrame(t testing.TB, ws *websocket.Conn) map[string]json.RawMessage {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return m
}

func dialWS(t testing.TB, c *client, what string, q url.Values) *websocket.Conn {
	t.Helper()
	if q == nil {
		q = url.Values{}
	}
	q.Set("transport", transportWebSockets)
	u := "ws" + strings.TrimPrefix(c.base, "http") + "/signalr/" + what + "?" + c.query(q).Encode()
	h := http.Header{}
	if c.user != "" {
		h.Set("X-Test-User", c.user)
	}
	return testkit.DialWS(t, nil, u, h, what)
}

// connectWS opens c's WebSocket with /signalr/connect and reads its init
// frame, which must say S 1.
func connectWS(t testing.TB, c *client) *websocket.Conn {
	t.Helper()
	ws := dialWS(t, c, "connect", nil)
	if init := readFrame(t, ws); string(init["S"]) != "1" {
		t.Fatalf("init frame %v", init)
	}
	return ws
}

// joinGroupG sends JoinGroup g on hub chat (invocation 7) over ws and
// reads until its response, which must carry no error. The groups token
// comes before or after it; one that comes after is left to the next read.
// what names the socket in a failure.
func joinGroupG(t testing.TB, ws *websocket.Conn, what string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"chat","M":"JoinGroup","A":["g"],"I":7}`)); err != nil {
		t.Fatal(err)
	}
	for { // the response and the groups token, in either order
		if m := readFrame(t, ws); string(m["I"]) == `"7"` {
			if m["E"] != nil {
				t.Fatalf("JoinGroup from %s: %v", what, m)
			}
			return
		}
	}
}

// TestStopTellsWebSocketsToReconnect: a node that stops writes "T":1 to
// its sockets, so their clients reconnect elsewhere.
func TestStopTellsWebSocketsToReconnect(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute, Draining: errors.New("draining")})
	c := negotiate(t, hs.URL, "", "chat")
	ws := dialWS(t, c, "connect", nil)
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read after Stop: %v", err)
	}
	if e := decodeEnvelope(t, string(data)); e.T != 1 || e.C != "0" {
		t.Fatalf("frame after Stop %s, want T 1 with the cursor", data)
	}
}

// An idle SignalR 2 WebSocket's reader parks: the socket still gets its
// messages, an invocation wakes the reader (and it parks again), and a
// client that hangs up while its reader is parked is noticed.
func TestIdleWebSocketsParkTheirReaders(t *testing.T) {
	tc, s, hs := newParkingServer(t, Options{})
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
		sockets[i] = connectWS(t, negotiate(t, hs.URL, "", "chat"))
	}
	parked(n, "every reader to park")

	joinGroupG(t, sockets[0], "a parked socket")
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

// An idle SignalR 2 WebSocket holds no goroutine: its writer ends once it
// has sent what there is (the store starts one at the next change of its
// hubs) and its reader parks. It still gets its hubs' messages and answers
// its client's invocations; a hang-up ends it and gives back its place in
// the per-address count; Stop tells the rest to reconnect elsewhere.
func TestIdleWebSocketsHoldNoGoroutine(t *testing.T) {
	limit := access.NewConnLimit(100)
	tc, s, hs := newParkingServer(t, Options{Draining: errors.New("draining"), ConnLimit: limit})
	const n = 20
	clients := make([]*client, n)
	sockets := make([]*websocket.Conn, n)
	before := runtime.NumGoroutine()
	for i := range sockets {
		clients[i] = negotiate(t, hs.URL, "", "chat", "news")
		sockets[i] = connectWS(t, clients[i])
	}
	testkit.WaitParked(t, "every socket to wait without a goroutine", s.ParkedReaders, n, before)

	tc.publish(t, &fsm.Publish{Hub: "other", Audience: fsm.ToAll, Target: "elsewhere", Arguments: []byte(`[1]`)})
	idx := tc.publish(t, &fsm.Publish{Hub: "news", Audience: fsm.ToAll, Target: "headline", Arguments: []byte(`[1]`)})
	for i, ws := range sockets {
		if m := readFrame(t, ws); string(m["C"]) != `"`+formatCursor(idx)+`"` || !strings.Contains(string(m["M"]), `"M":"headline"`) {
			t.Fatalf("socket %d: frame %v, want the headline at %d (and nothing of hub other)", i, m, idx)
		}
	}
	joinGroupG(t, sockets[0], "an idle socket")
	testkit.WaitParked(t, "every socket to wait again without a goroutine", s.ParkedReaders, n, before)

	for _, ws := range sockets[n/2:] {
		_ = ws.UnderlyingConn().Close() // hang up without a close frame
	}
	testkit.WaitFor(t, 5*time.Second, "the hung-up sockets to end and give back their places", func() (bool, string) {
		held := limit.Count("127.0.0.1")
		return held == n/2, fmt.Sprintf("%d places held", held)
	})

	s.Stop()
	for i, ws := range sockets[:n/2] {
		var m map[string]json.RawMessage
		for m = readFrame(t, ws); m["G"] != nil && m["T"] == nil; m = readFrame(t, ws) {
			// socket 0's groups token
		}
		if string(m["T"]) != "1" {
			t.Fatalf("socket %d after Stop: frame %v, want T 1 with the cursor", i, m)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "every socket to end", func() (bool, string) {
		held, parked := limit.Count("127.0.0.1"), s.ParkedReaders()
		return held == 0 && parked == 0, fmt.Sprintf("%d places held, %d parked", held, parked)
	})
}

// SignalR 2 WebSockets under a stream of commits over their two hubs and
// another: the writer a change starts and the one already running hand
// over without losing a wake-up, so each socket gets each of its hubs'
// messages once, in order.
func TestWebSocketsMissNoWakeUp(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute, ParkIdleReaders: time.Millisecond})
	const n, messages = 8, 240
	sockets := make([]*websocket.Conn, n)
	for i := range sockets {
		sockets[i] = connectWS(t, negotiate(t, hs.URL, "", "chat", "news"))
	}
	hubs := []string{"chat", "news", "other"}
	var want []string
	for i := range messages {
		if hubs[i%3] != "other" {
			want = append(want, fmt.Sprint("m", i))
		}
	}
	go func() {
		for i := range messages {
			p := &fsm.Publish{Hub: hubs[i%3], Audience: fsm.ToAll, Target: fmt.Sprint("m", i), Arguments: []byte(`[1]`)}
			if _, err := tc.commit(fsm.EncodePublish(p)); err != nil {
				t.Errorf("publish %d: %v", i, err) // not Fatal: another goroutine
				return
			}
		}
	}()
	for i, ws := range sockets {
		var got []string
		for len(got) < len(want) {
			var msgs []struct{ M string }
			if err := json.Unmarshal(readFrame(t, ws)["M"], &msgs); err != nil {
				t.Fatalf("socket %d: %v", i, err)
			}
			for _, m := range msgs {
				got = append(got, m.M)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("socket %d: got %v, want %v", i, got, want)
		}
	}
}

// Counts reports the open WebSockets and SSE streams of this node, and
// its waiting long polls, and forgets each when it ends.
func TestCountsByTransport(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute})
	counted := func(what string, want map[string]int) {
		t.Helper()
		testkit.WaitFor(t, 5*time.Second, what, func() (bool, string) {
			got := s.Counts()
			return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("counts %v", got)
		})
	}
	counted("nothing counted", map[string]int{"signalr2_websockets": 0, "signalr2_sse": 0, "signalr2_longpolling": 0})

	ws := dialWS(t, negotiate(t, hs.URL, "", "chat"), "connect", nil)
	readFrame(t, ws)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sse := negotiate(t, hs.URL, "", "chat").doResp(http.MethodGet, "connect", url.Values{"transport": {transportSSE}}, nil, ctx)
	defer sse.Body.Close()
	lp := negotiate(t, hs.URL, "", "chat")
	init := lp.connectLP()
	pollCtx, stopPoll := context.WithCancel(context.Background())
	polled := make(chan struct{})
	pollURL := lp.base + "/signalr/poll?" + lp.query(url.Values{"transport": {transportLongPoll}}).Encode()
	go func() { // not doResp: it would fail the test from this goroutine when the poll is cancelled
		defer close(polled)
		req, _ := http.NewRequestWithContext(pollCtx, http.MethodPost, pollURL, strings.NewReader("messageId="+init.C))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	counted("one of each", map[string]int{"signalr2_websockets": 1, "signalr2_sse": 1, "signalr2_longpolling": 1})

	ws.Close()
	cancel()
	stopPoll()
	<-polled
	counted("each forgotten once it ended", map[string]int{"signalr2_websockets": 0, "signalr2_sse": 0, "signalr2_longpolling": 0})
}

// A SignalR 2 WebSocket ends when its client's token expires, with a close
// frame, and gives its place back; it holds no goroutine meanwhile.
func TestWebSocketEndsWhenItsTokenExpires(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	expires := time.Now().Add(time.Second)
	s, hs := newTestServer(t, tc, Options{KeepAlive: time.Minute, Authenticate: func(r *http.Request, hubs []string) (Identity, error) {
		id, err := testAuth(r, hubs)
		id.Expires = expires
		return id, err
	}})
	ws := connectWS(t, negotiate(t, hs.URL, "", "chat"))
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after the token expired: got %v, want a normal close", err)
	}
	if time.Now().Before(expires) {
		t.Fatalf("closed before the token expired at %s", expires.Format(time.StampMilli))
	}
	testkit.WaitFor(t, 5*time.Second, "the socket to be forgotten", func() (bool, string) {
		n := s.Counts()["signalr2_websockets"]
		return n == 0, fmt.Sprintf("%d counted", n)
	})
}

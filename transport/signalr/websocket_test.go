package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/netconn"
)

func TestWebSocketInvokeAndDeliver(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	sender, receiver := ts.openWS("chat", ""), ts.openWS("chat", "")

	done := sender.invoke("7", "SendToAll", "notify", "hello", 42)
	if done.Error != "" || len(done.Result) == 0 {
		t.Fatalf("SendToAll completion: got %s, want a result", done.raw)
	}
	index, err := strconv.ParseUint(string(done.Result), 10, 64)
	if err != nil {
		t.Fatalf("SendToAll completion: got result %s, want a message index", done.Result)
	}
	page, err := ts.cluster.ReadAll(index-1, 1)
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Index != index || page.Messages[0].Target != "notify" {
		t.Fatalf("committed message at %d: got %+v (err %v), want the notify message", index, page.Messages, err)
	}
	got := receiver.next()
	mustEqual(t, "delivered record", got.raw, `{"type":1,"target":"notify","arguments":["hello",42]}`)
	// The sender is in the audience too.
	mustEqual(t, "record delivered to the sender", sender.next().raw, got.raw)
}

func TestWebSocketFraming(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	n := ts.negotiate("chat", "")
	c, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
	if err != nil {
		t.Fatalf("upgrade: got error %v (status %v), want a WebSocket", err, statusOf(resp))
	}
	// The handshake and two invocations in one frame.
	c.write(handshakeJSON + invocation("1", "SendToAll", "a") + invocation("2", "SendToAll", "b"))
	f := c.frame()
	if f.kind != websocket.TextMessage || !strings.HasPrefix(string(f.data), "{}"+rs) {
		t.Fatalf("first frame: got kind %d %q, want text starting with the handshake reply", f.kind, f.data)
	}
	c.buf = strings.TrimPrefix(string(f.data), "{}"+rs)
	for _, id := range []string{"1", "2"} {
		if r := c.completion(id); r.Error != "" {
			t.Fatalf("completion %s: got %s, want a result", id, r.raw)
		}
	}
	// One record split across three frames.
	rec := invocation("3", "SendToAll", "c", strings.Repeat("x", 100))
	c.write(rec[:10])
	c.write(rec[10:50])
	c.write(rec[50:])
	if r := c.completion("3"); r.Error != "" {
		t.Fatalf("completion of the split record: got %s, want a result", r.raw)
	}
	// The three broadcasts reached the sender in order.
	var targets []string
	for range 3 {
		targets = append(targets, c.next().Target)
	}
	mustEqual(t, "broadcast targets", strings.Join(targets, ","), "a,b,c")
}

func TestWebSocketHandshakeErrors(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, tc := range []struct{ handshake, want string }{
		{`{"protocol":"x","version":1}` + rs, `{"error":"The protocol 'x' is not supported."}` + rs},
		{`{"protocol":"json","version":3}` + rs, `{"error":"The server does not support version 3 of the 'json' protocol."}` + rs},
	} {
		c, resp, err := ts.dialWS("chat", "", nil)
		if err != nil {
			t.Fatalf("upgrade: got error %v (status %v), want a WebSocket", err, statusOf(resp))
		}
		c.write(tc.handshake)
		f := c.frame()
		mustEqual(t, "reply to "+tc.handshake, string(f.data), tc.want)
		if rest := c.closed(); len(rest) != 0 {
			t.Fatalf("after the handshake error: got %v, want the socket closed", rest)
		}
	}
}

func TestWebSocketMessagePack(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	mp := hubproto.MessagePack{}
	c, resp, err := ts.dialWS("chat", "", nil) // skipNegotiation
	if err != nil {
		t.Fatalf("upgrade: got error %v (status %v), want a WebSocket", err, statusOf(resp))
	}
	c.write(`{"protocol":"messagepack","version":1}` + rs)
	f := c.frame()
	if f.kind != websocket.BinaryMessage || string(f.data) != "{}"+rs {
		t.Fatalf("handshake reply: got kind %d %q, want a binary frame %q", f.kind, f.data, "{}"+rs)
	}
	inv := hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "SendToAll",
		Arguments: []hubproto.RawValue{hubproto.JSONValue([]byte(`"notify"`)), hubproto.JSONValue([]byte(`{"n":1}`))}}
	rec, err := mp.Append(nil, &inv)
	if err != nil {
		t.Fatalf("encode invocation: %v", err)
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, rec); err != nil {
		t.Fatalf("write: %v", err)
	}
	var got []hubproto.Message
	for len(got) < 2 {
		f := c.frame()
		if f.kind != websocket.BinaryMessage {
			t.Fatalf("frame: got kind %d %q, want binary", f.kind, f.data)
		}
		msgs, consumed, err := mp.Parse(f.data, 0)
		if err != nil || consumed != len(f.data) {
			t.Fatalf("parse frame %x: got %d of %d bytes, error %v, want whole records", f.data, consumed, len(f.data), err)
		}
		got = append(got, msgs...)
	}
	var sawCompletion, sawDelivery bool
	for _, m := range got {
		switch {
		case m.Type == hubproto.Completion && m.InvocationID == "1" && m.HasResult && m.Error == "":
			sawCompletion = true
		case m.Type == hubproto.Invocation && m.Target == "notify" && len(m.Arguments) == 1:
			arg, _ := m.Arguments[0].AppendJSON(nil)
			mustEqual(t, "delivered argument", string(arg), `{"n":1}`)
			sawDelivery = true
		}
	}
	if !sawCompletion || !sawDelivery {
		t.Fatalf("messages: got %+v, want a Completion of 1 and a notify Invocation", got)
	}
}

func TestWebSocketKeepAlive(t *testing.T) {
	t.Parallel()
	keepAlive := 200 * time.Millisecond
	ts := newTestServer(t, testOptions(func(o *Options) { o.KeepAlive = keepAlive }))
	c := ts.openWS("chat", "")
	start := time.Now()
	r := c.nextAny()
	if r.raw != `{"type":6}` {
		t.Fatalf("after an idle KeepAlive: got %s, want a Ping", r.raw)
	}
	if elapsed := time.Since(start); elapsed < keepAlive/2 {
		t.Fatalf("Ping: got it %s after the handshake, want about %s of idleness first", elapsed, keepAlive)
	}
}

func TestWebSocketClientTimeout(t *testing.T) {
	t.Parallel()
	clientTimeout := 600 * time.Millisecond
	ts := newTestServer(t, testOptions(func(o *Options) {
		o.KeepAlive, o.ClientTimeout = 200*time.Millisecond, clientTimeout
	}))
	c := ts.openWS("chat", "")
	start := time.Now()
	c.write(`{"type":6}` + rs) // as the JS client does right after the handshake
	got := c.closed()
	// As ASP.NET: allowReconnect, without an error (issue 13, item 8).
	wantClose(t, "silent client", got, false, true)
	if elapsed := time.Since(start); elapsed < clientTimeout {
		t.Fatalf("client timeout: got the close after %s, want at least %s", elapsed, clientTimeout)
	}
	waitFor(t, "the timed-out connection to leave the replicated state", func() (bool, string) {
		return !ts.cluster.recorded(t, c.id), "still recorded"
	})
}

func TestWebSocketMaxMessageSize(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.MaxMessageSize = 1024 }))
	big, other := ts.openWS("chat", ""), ts.openWS("chat", "")
	big.write(invocation("1", "SendToAll", "notify", strings.Repeat("x", 2000)))
	got := big.closed()
	wantClose(t, "oversized message", got, true, false)
	for _, r := range got[:len(got)-1] {
		if r.Type == 3 || r.Target == "notify" {
			t.Fatalf("oversized message: got %s, want it not invoked", r.raw)
		}
	}
	if r := other.invoke("1", "SendToAll", "notify", "small"); r.Error != "" {
		t.Fatalf("other connection: got %s, want a result", r.raw)
	}
	mustEqual(t, "other connection's delivery", other.next().raw, `{"type":1,"target":"notify","arguments":["small"]}`)
}

// TestSlowWebSocketClient fills a non-reading client's socket (small TCP
// buffers on both ends) and then its queue while a reading client keeps up.
func TestSlowWebSocketClient(t *testing.T) {
	t.Parallel()
	// Until a blocked write times out, only the full queue can disconnect
	// the slow client. (10 s: on a loaded machine, publishing the 400
	// messages to the reading client took longer than 3 s, so the deadline
	// sometimes came first.)
	const writeTimeout = 10 * time.Second
	cluster := newFakeCluster(t, "a")
	ts := startServer(t, cluster, testOptions(func(o *Options) {
		o.OutboundQueue, o.WriteDeadline = 8, writeTimeout
	}), smallSendBuffers)
	n := ts.negotiate("chat", "")
	dialer := smallReceiveBufferDialer()
	slow, resp, err := dialer.Dial("ws"+strings.TrimPrefix(ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), "http"), nil)
	if err != nil {
		t.Fatalf("slow client upgrade: got error %v (status %v), want a WebSocket", err, statusOf(resp))
	}
	t.Cleanup(func() { _ = slow.Close() })
	_ = slow.SetReadDeadline(time.Now().Add(waitTimeout))
	if err := slow.WriteMessage(websocket.TextMessage, []byte(handshakeJSON)); err != nil {
		t.Fatalf("slow client handshake: %v", err)
	}
	if _, data, err := slow.ReadMessage(); err != nil || string(data) != "{}"+rs {
		t.Fatalf("slow client handshake reply: got %q, %v, want %q", data, err, "{}"+rs)
	}
	fast := ts.openWS("chat", "")

	const total, window = 400, 4
	payload := strings.Repeat("p", 1024)
	received := 0
	check := func(r record) {
		t.Helper()
		want := `[` + strconv.Itoa(received) + `,"` + payload + `"]`
		if r.Type != 1 || r.Target != "seq" || sprintArgs(r.Arguments) != want {
			t.Fatalf("reading client, message %d: got %.80s, want seq with %.20s...", received, r.raw, want)
		}
		received++
	}
	// The slow client starts reading the moment it is seen cut off, while
	// its blocked write still waits: that write then finishes, and the
	// client gets what was queued, in order with no gaps, then a Close that
	// allows reconnecting, then the socket closes. (Reading only after all
	// the publishes could start after the write timed out, on a loaded
	// machine, and then no Close can arrive.)
	type slowRead struct {
		frames [][]byte
		err    error
	}
	slowDone := make(chan slowRead, 1)
	readSlow := func() {
		var got slowRead
		_ = slow.SetReadDeadline(time.Now().Add(writeTimeout + 2*waitTimeout))
		for {
			_, data, err := slow.ReadMessage()
			if err != nil {
				got.err = err
				break
			}
			got.frames = append(got.frames, data)
		}
		slowDone <- got
	}
	start := time.Now()
	var cutOff time.Duration // when the slow client was seen disconnected
	for i := range total {
		args, _ := json.Marshal([]any{i, payload})
		cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "seq", Arguments: args})
		if i >= window {
			check(fast.next())
		}
		if cutOff == 0 && ts.srv.lookup(n.ConnectionToken) == nil {
			cutOff = time.Since(start)
			go readSlow()
		}
	}
	for received < total {
		check(fast.next())
	}
	if cutOff == 0 || cutOff >= writeTimeout {
		t.Fatalf("slow client: got it disconnected after %s (0: never) of %d messages, want it cut off by its full queue within %s", cutOff, total, writeTimeout)
	}
	if ts.srv.lookup(fast.token) == nil {
		t.Fatal("reading client: got it disconnected, want it connected")
	}
	got := <-slowDone
	if ne, ok := got.err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow client: socket still open after %s, want it closed", writeTimeout+2*waitTimeout)
	}
	next := 0
	var last record
	for _, data := range got.frames {
		for _, raw := range splitRecords(t, string(data)) {
			if last.Type == 7 {
				t.Fatalf("slow client: got %.40s after the Close, want nothing", raw)
			}
			last = parseRecord(t, raw)
			if last.Type == 7 {
				continue
			}
			if last.Type != 1 || !strings.HasPrefix(sprintArgs(last.Arguments), "["+strconv.Itoa(next)+",") {
				t.Fatalf("slow client: got %.40s, want message %d", raw, next)
			}
			next++
		}
	}
	if next >= total {
		t.Fatalf("slow client: got all %d messages, want it cut off", next)
	}
	if last.Type != 7 || last.Error == "" || !last.AllowReconnect {
		t.Fatalf("slow client: got last record %.200s, want a Close with an error and allowReconnect", last.raw)
	}
}

// smallReceiveBufferDialer dials WebSockets whose kernel receive buffer
// is small, so a client that stops reading stalls the server's writes
// soon.
func smallReceiveBufferDialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: waitTimeout, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return conn, err
	}}
}

// smallSendBuffers shrinks the server's socket send buffers, so a client
// that does not read blocks the server's writes quickly.
func smallSendBuffers(ln net.Listener) net.Listener { return smallBufListener{ln} }

type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return conn, err
}

func TestWebSocketCloses(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))

	bye := ts.openWS("chat", "")
	bye.write(`{"type":7}` + rs) // the client's own Close gets no Close back
	if got := bye.closed(); len(got) != 0 {
		t.Fatalf("after the client's Close: got %v, want the socket closed with nothing more", got)
	}
	waitFor(t, "the closed connection to leave the replicated state", func() (bool, string) {
		return !ts.cluster.recorded(t, bye.id), "still recorded"
	})

	bad := ts.openWS("chat", "")
	bad.write(`{"type":1,"target":"SendToAll","arguments":null}` + rs)
	wantClose(t, "malformed record", bad.closed(), true, false)

	// Stop tells every client it may reconnect.
	c := ts.openWS("chat", "")
	ts.srv.Stop()
	wantClose(t, "server stop", c.closed(), false, true)
}

// An idle WebSocket costs no goroutine on the server: its reader parks
// after ParkIdleReaders without a byte from the client (the socket waits in
// the process's shared epoll set), and its writer runs only while records
// are queued. A parked socket still gets its messages; the client's next
// invocation, its hang-up and the server's own close all reach it.
func TestIdleWebSocketsHoldNoGoroutine(t *testing.T) {
	ts := newTestServer(t, Options{ParkIdleReaders: 100 * time.Millisecond})
	parker, err := netconn.Shared()
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("readers park on Linux only")
	}
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = ts.openWS("chat", "")
	}
	broadcast := func(target string) {
		ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: target, Arguments: []byte(`[]`)})
		for _, c := range clients {
			if r := c.next(); r.Target != target {
				t.Fatalf("got %s, want the broadcast %q", r.raw, target)
			}
		}
	}
	allParked := func(what string) {
		t.Helper()
		waitFor(t, what, func() (bool, string) {
			readers, _, writers := socketGoroutines()
			parked, counted := parker.Parked(), ts.srv.ParkedReaders()
			return readers == 0 && writers == 0 && parked >= n && counted == n,
				fmt.Sprintf("%d readers, %d writers, %d sockets parked, %d counted by the server", readers, writers, parked, counted)
		})
	}
	broadcast("wake")
	allParked("every socket to park its reader")

	broadcast("again") // parked sockets get messages
	for i, c := range clients {
		if r := c.invoke(strconv.Itoa(i), "JoinGroup", "g"); r.Error != "" {
			t.Fatalf("JoinGroup from a parked socket: %s", r.raw)
		}
	}
	allParked("every socket to park again after its invocation")

	for _, c := range clients[n/2:] {
		_ = c.conn.UnderlyingConn().Close() // hang up without a Close message
	}
	waitFor(t, "the server to notice the parked sockets that hung up", func() (bool, string) {
		got := ts.srv.Counts()["signalr_websockets"]
		return got == n/2, fmt.Sprintf("%d WebSocket connections", got)
	})
	mustEqual(t, "parked readers after the hang-ups", ts.srv.ParkedReaders(), int64(n/2))
	ts.srv.Stop()
	for _, c := range clients[:n/2] {
		wantClose(t, "server stop with the socket parked", c.closed(), false, true)
	}
	waitFor(t, "no reader to stay counted as parked", func() (bool, string) {
		got := ts.srv.ParkedReaders()
		return got == 0, fmt.Sprintf("%d parked", got)
	})
}

// socketGoroutines counts the goroutines of WebSocket readers (and of
// those, the ones waiting for bytes) and writers.
func socketGoroutines() (readers, waiting, writers int) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "signalr.(*Server).readSocket"):
			readers++
			if strings.Contains(g, "netconn.(*IdleReader).Wait") {
				waiting++
			}
		case strings.Contains(g, "signalr.(*socket).runWriter"):
			writers++
		}
	}
	return readers, waiting, writers
}

// With parking off, an idle WebSocket keeps one goroutine, its reader,
// waiting outside gorilla's read path.
func TestUnparkedIdleWebSocketHoldsOnlyItsReader(t *testing.T) {
	ts := newTestServer(t, Options{ParkIdleReaders: -1})
	const n = 30
	for range n {
		ts.openWS("chat", "")
	}
	waitFor(t, "each socket to hold only its reader, waiting idle", func() (bool, string) {
		readers, waiting, writers := socketGoroutines()
		return readers == n && waiting == n && writers == 0,
			fmt.Sprintf("%d readers, %d waiting idle, %d writers", readers, waiting, writers)
	})
}

// ObserveDispatch times each message queued to local connections from its
// entry's stamp; a message nobody here receives is not observed.
func TestObserveDispatchTimesMessagesWithLocalRecipients(t *testing.T) {
	observed := make(chan time.Duration, 10)
	ts := newTestServer(t, testOptions(func(o *Options) {
		o.ObserveDispatch = func(d time.Duration) { observed <- d }
	}))
	c := ts.openWS("chat", "")
	ts.cluster.publish(t, &fsm.Publish{Hub: "elsewhere", Audience: fsm.ToAll, Target: "nobody", Arguments: []byte(`[]`)})
	start := time.Now()
	ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "hello", Arguments: []byte(`[]`)})
	if r := c.next(); r.Target != "hello" {
		t.Fatalf("got %s, want the message", r.raw)
	}
	select {
	case d := <-observed:
		if d < 0 || d > time.Since(start) {
			t.Fatalf("got delay %s, want between 0 and %s", d, time.Since(start))
		}
	case <-time.After(waitTimeout):
		t.Fatal("got no observation, want one for the delivered message")
	}
	select {
	case d := <-observed:
		t.Fatalf("got a second observation (%s), want none for the message without local recipients", d)
	default:
	}
}

// A socket that only answered the handshake never keeps a lingering
// writer: lingering is for sockets that stream.
func TestHandshakeOnlySocketDoesNotLinger(t *testing.T) {
	ts := newTestServer(t, Options{})
	const n = 10
	for range n {
		ts.openWS("chat", "")
	}
	deadline := time.Now().Add(1500 * time.Millisecond) // past writerLinger
	for time.Now().Before(deadline) {
		ts.srv.mu.RLock()
		for _, c := range ts.srv.byID {
			c.mu.Lock()
			sock := c.sock
			c.mu.Unlock()
			if sock != nil && sock.lingering.Load() {
				ts.srv.mu.RUnlock()
				t.Fatalf("connection %s: its writer lingers after the handshake alone, want it gone", c.id)
			}
		}
		ts.srv.mu.RUnlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// A sweep that pings many idle WebSockets writes the Pings on a few
// goroutines, not one per socket (the runtime keeps every goroutine
// descriptor it made), and every socket still gets its Ping.
func TestKeepAlivePingsOfIdleSocketsShareFewWriters(t *testing.T) {
	ts := newTestServer(t, testOptions(func(o *Options) { o.ClientTimeout = time.Hour }))
	const n = 200
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = ts.openWS("chat", "")
	}
	ts.srv.reap(time.Now().Add(2 * time.Minute)) // every socket silent past KeepAlive
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if writers := strings.Count(string(buf), "signalr.(*socket).runWriter"); writers > pingWriters {
		t.Fatalf("right after the sweep: %d writer goroutines, want at most %d", writers, pingWriters)
	}
	for i, c := range clients {
		if r := c.nextAny(); r.Type != 6 {
			t.Fatalf("client %d: got %s, want a Ping", i, r.raw)
		}
	}
}

// Readers that park after a few milliseconds, over many rounds of
// invocations, broadcasts, hang-ups and server-side ends: every invocation
// completes, every broadcast arrives, every end is noticed (under -race,
// the parker's goroutine, resumed readers, writers and the reaper all run
// against the same sockets).
func TestParkingReadersChurn(t *testing.T) {
	ts := newTestServer(t, Options{ParkIdleReaders: 2 * time.Millisecond})
	const n = 24
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = ts.openWS("chat", "")
	}
	open := n
	for round := range 30 {
		for i, c := range clients {
			if c == nil {
				continue
			}
			if r := c.invoke(fmt.Sprintf("%d-%d", round, i), "JoinGroup", fmt.Sprintf("g%d", round%3)); r.Error != "" {
				t.Fatalf("round %d, client %d: JoinGroup: %s", round, i, r.raw)
			}
		}
		target := fmt.Sprintf("r%d", round)
		ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: target, Arguments: []byte(`[]`)})
		for i, c := range clients {
			if c == nil {
				continue
			}
			if r := c.next(); r.Target != target {
				t.Fatalf("round %d, client %d: got %s, want %s", round, i, r.raw, target)
			}
		}
		if round%10 != 9 {
			continue
		}
		// With every reader parked, one client hangs up and the server
		// ends another.
		waitFor(t, "every reader to park", func() (bool, string) {
			readers, _, _ := socketGoroutines()
			return readers == 0, fmt.Sprintf("%d readers", readers)
		})
		hangUp, ended := round/10*2, round/10*2+1
		_ = clients[hangUp].conn.UnderlyingConn().Close()
		clients[ended].serverConn(ts).end("", true, "ended by the test")
		wantClose(t, "ended by the server", clients[ended].closed(), false, true)
		clients[hangUp], clients[ended] = nil, nil
		open -= 2
		waitFor(t, "the server to drop both", func() (bool, string) {
			got := ts.srv.Counts()["signalr_websockets"]
			return got == open, fmt.Sprintf("%d WebSocket connections, want %d", got, open)
		})
	}
}

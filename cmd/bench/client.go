package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/hubproto"
)

// targetMethod is the client method every benchmark message invokes.
const targetMethod = "msg"

// newHTTPClient returns a client that keeps up to conns connections per
// node, so many requests in flight never wait for a connection.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4 * conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// openStream requests the native cursor stream of hub on base from after
// on: GET /v1/hubs/{hub}/stream?after=N, Server-Sent Events.
func openStream(ctx context.Context, hc *http.Client, base, hub string, after uint64) (*http.Response, error) {
	u := fmt.Sprintf("%s/v1/hubs/%s/stream?after=%d", base, hub, after)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// payload builds message arguments of a fixed size that carry the send
// time, a sequence number and the node the message entered through:
// [sendUnixNano, seq, origin, "xxx…"]. Size is the length of the JSON
// arguments array.
type payload struct {
	size int
	pad  string
}

func newPayload(size int) payload {
	return payload{size: size, pad: strings.Repeat("x", max(size, 0))}
}

// args appends the JSON arguments array.
func (p payload) args(dst []byte, sent time.Time, seq int64, origin int) []byte {
	start := len(dst)
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, sent.UnixNano(), 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(origin), 10)
	dst = append(dst, ',', '"')
	padLen := max(p.size-(len(dst)-start)-2, 0)
	dst = append(dst, p.pad[:padLen]...)
	return append(dst, '"', ']')
}

// values appends the same arguments to dst, one value each, after prefix:
// the arguments of a relay invocation, which takes its own (the group, the
// target) first.
func (p payload) values(dst []hubproto.RawValue, sent time.Time, seq int64, origin int, prefix ...string) []hubproto.RawValue {
	for _, s := range prefix {
		dst = append(dst, hubproto.JSONValue(strconv.AppendQuote(nil, s)))
	}
	arr := p.args(nil, sent, seq, origin)
	for _, v := range bytes.SplitN(arr[1:len(arr)-1], []byte(","), 4) {
		dst = append(dst, hubproto.JSONValue(v))
	}
	return dst
}

// restBody is a REST send body: {"target":"msg","arguments":[...]}.
func (p payload) restBody(sent time.Time, seq int64, origin int) []byte {
	b := make([]byte, 0, p.size+40)
	b = append(b, `{"target":"`+targetMethod+`","arguments":`...)
	b = p.args(b, sent, seq, origin)
	return append(b, '}')
}

// stamp is what a receiver reads back from a message.
type stamp struct {
	sent   int64 // unix nanos
	seq    int64
	origin int
}

// readStamp parses the first three arguments of a benchmark message.
func readStamp(args []hubproto.RawValue) (stamp, bool) {
	if len(args) < 3 {
		return stamp{}, false
	}
	sent, ok1 := atoi(args[0].Data)
	seq, ok2 := atoi(args[1].Data)
	origin, ok3 := atoi(args[2].Data)
	return stamp{sent: sent, seq: seq, origin: int(origin)}, ok1 && ok2 && ok3
}

// atoi parses a non-negative JSON integer without allocating.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// publish posts body to POST /api/v1/hubs/{hub} on base and returns the
// committed message index.
func publish(ctx context.Context, hc *http.Client, base, hub string, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/hubs/"+hub, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("publish not accepted: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	idx, err := strconv.ParseUint(resp.Header.Get("Backplane-Index"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("publish: bad Backplane-Index %q: %w", resp.Header.Get("Backplane-Index"), err)
	}
	return idx, nil
}

// hubClient is a SignalR client over WebSocket with the JSON protocol
// (transport/hubproto encodes and parses its records). One goroutine
// reads; onMessage runs on it for every Invocation and onCompletion for
// every Completion.
type hubClient struct {
	node int // index of the node it is connected to
	ws   *websocket.Conn
	wmu  sync.Mutex
	// Guarded by wmu: the buffer invoke builds records in, and when the
	// write deadline next needs moving.
	wbuf      []byte
	wdeadline time.Time

	onMessage    func(c *hubClient, m *hubproto.Message, now time.Time)
	onCompletion func(c *hubClient, m *hubproto.Message, now time.Time)
	readEnd      // why and when reading stopped
	// done receives the error text of completions while a caller waits in
	// invokeWait ("" for success).
	done   chan string
	nextID atomic.Int64
	// sentAt holds the send time of recent invocations by id, to time
	// their completion. It is allocated only for a client that gets
	// completions, so an idle client stays small.
	sentAt *[sentRing]atomic.Int64
	// frames counts the WebSocket messages read (as gorilla returns them,
	// fragments joined) and records the hub-protocol records parsed from
	// them, for records per frame.
	frames, records atomic.Int64
}

// sentRing is how many recent invocations a client can time: at most
// this many may be outstanding at once.
const sentRing = 1024

// readerDialer is the WebSocket dialer of clients that read a stream of
// messages (broadcast, chat, fanout and the raw WebSocket baseline).
var readerDialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 4 << 10}

// idleDialer keeps an idle client small: a 1 KiB read buffer and write
// buffers held only while a frame is written.
var idleDialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024,
	WriteBufferPool: &sync.Pool{}}

// dialHub opens a hub client on base (dialHubSocket with readerDialer)
// that reads until Close or an error.
func dialHub(ctx context.Context, hc *http.Client, base, hub string, node int,
	onMessage, onCompletion func(*hubClient, *hubproto.Message, time.Time)) (*hubClient, error) {
	ws, rest, err := dialHubSocket(ctx, hc, readerDialer, base, hub)
	if err != nil {
		return nil, err
	}
	c := newHubClient(ws, node, onMessage, onCompletion)
	go c.read(rest)
	return c, nil
}

// negotiate posts (SignalR) or gets (SignalR 2) a negotiate URL and
// returns the connection token it answers.
func negotiate(ctx context.Context, hc *http.Client, method, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("negotiate: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var neg struct{ ConnectionToken string } // connectionToken in SignalR
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &neg) != nil || neg.ConnectionToken == "" {
		return "", fmt.Errorf("negotiate: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return neg.ConnectionToken, nil
}

// dialHubSocket negotiates on base, upgrades to WebSocket with d and
// completes the JSON handshake; it returns the socket and what followed
// the handshake response.
func dialHubSocket(ctx context.Context, hc *http.Client, d *websocket.Dialer, base, hub string) (*websocket.Conn, []byte, error) {
	token, err := negotiate(ctx, hc, http.MethodPost, base+"/hubs/"+hub+"/negotiate?negotiateVersion=1")
	if err != nil {
		return nil, nil, err
	}
	ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/hubs/"+hub+"?id="+url.QueryEscape(token), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("websocket: %w", err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, hubproto.AppendHandshakeRequest(nil, "json", 1)); err != nil {
		ws.Close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var buf []byte
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, nil, fmt.Errorf("handshake: %w", err)
		}
		buf = append(buf, data...)
		errMsg, rest, ok, err := hubproto.ParseHandshakeResponse(buf)
		if err != nil || errMsg != "" {
			ws.Close()
			return nil, nil, fmt.Errorf("handshake: %v %s", err, errMsg)
		}
		if ok {
			_ = ws.SetReadDeadline(time.Time{})
			return ws, append([]byte(nil), rest...), nil
		}
	}
}

// newHubClient wraps an open WebSocket; the caller starts c.read.
func newHubClient(ws *websocket.Conn, node int, onMessage, onCompletion func(*hubClient, *hubproto.Message, time.Time)) *hubClient {
	c := &hubClient{node: node, ws: ws, onMessage: onMessage, onCompletion: onCompletion,
		readEnd: readEnd{closed: make(chan struct{})}, done: make(chan string, 1)}
	if onCompletion != nil {
		c.sentAt = new([sentRing]atomic.Int64)
	}
	return c
}

// read parses records, after rest, until the connection ends. A frame is
// counted together with its records, so that a count taken meanwhile sees
// both or neither (almost: they are two atomics).
func (c *hubClient) read(rest []byte) {
	defer close(c.closed)
	buf := bytes.NewBuffer(rest)
	frame := false // buf holds a frame not yet counted
	for {
		if buf.Len() > 0 || frame {
			records, consumed, err := c.handle(buf.Bytes())
			c.records.Add(int64(records))
			if frame {
				c.frames.Add(1)
				frame = false
			}
			if err != nil {
				c.err = err
				c.ws.Close()
				return
			}
			buf.Next(consumed)
		}
		_, r, err := c.ws.NextReader()
		if err == nil {
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.err = err
			return
		}
		frame = true
	}
}

// invocationPrefix is how the server's JSON protocol starts an
// Invocation record.
var invocationPrefix = []byte(`{"type":1,`)

// handle parses the complete records at the start of buf and calls the
// callbacks; it returns the records seen and the bytes they took. A
// client without onMessage does not parse Invocations at all (only
// counts them): hifreq-ws publishers receive every message they relay to
// the hub, dozens for each of their own completions, and parsing those
// cost the bench process most of its CPU. The callbacks get the time the
// records were read: after the parse with onMessage, before it without.
func (c *hubClient) handle(buf []byte) (records, consumed int, err error) {
	if c.onMessage != nil {
		msgs, consumed, err := hubproto.JSON{}.Parse(buf, 0)
		if err == nil {
			err = c.dispatch(msgs, time.Now())
		}
		return len(msgs), consumed, err
	}
	now := time.Now()
	for consumed < len(buf) {
		i := bytes.IndexByte(buf[consumed:], 0x1e) // the record separator
		if i < 0 {
			break
		}
		rec := buf[consumed : consumed+i+1]
		consumed += len(rec)
		records++
		if bytes.HasPrefix(rec, invocationPrefix) {
			continue
		}
		msgs, _, err := hubproto.JSON{}.Parse(rec, 0)
		if err == nil {
			err = c.dispatch(msgs, now)
		}
		if err != nil {
			return records, consumed, err
		}
	}
	return records, consumed, nil
}

// dispatch calls the callbacks for parsed records; a Close record ends
// the client with an error.
func (c *hubClient) dispatch(msgs []hubproto.Message, now time.Time) error {
	for i := range msgs {
		m := &msgs[i]
		switch m.Type {
		case hubproto.Invocation:
			if c.onMessage != nil {
				c.onMessage(c, m, now)
			}
		case hubproto.Completion:
			if c.onCompletion != nil {
				c.onCompletion(c, m, now)
			}
		case hubproto.Close:
			return fmt.Errorf("server closed the connection: %q (allowReconnect %v)", m.Error, m.AllowReconnect)
		}
	}
	return nil
}

// frameCount is the WebSocket frames and hub-protocol records a set of
// clients have read so far.
type frameCount struct{ frames, records int64 }

// countFrames sums the frames and records the clients have read.
func countFrames(clients []*hubClient) frameCount {
	var fc frameCount
	for _, c := range clients {
		fc.frames += c.frames.Load()
		fc.records += c.records.Load()
	}
	return fc
}

// recordsPerFrame is records per WebSocket frame read between two counts
// (0 when no frame was read).
func recordsPerFrame(before, after frameCount) float64 {
	if after.frames <= before.frames {
		return 0
	}
	return float64(after.records-before.records) / float64(after.frames-before.frames)
}

// invoke sends an Invocation with an invocation id (so the server answers
// with a Completion) and remembers when it was sent.
func (c *hubClient) invoke(target string, args []hubproto.RawValue, now time.Time) error {
	id := c.nextID.Add(1)
	if c.sentAt != nil {
		c.sentAt[id%int64(len(c.sentAt))].Store(now.UnixNano())
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	m := hubproto.Message{Type: hubproto.Invocation, InvocationID: strconv.FormatInt(id, 10), Target: target, Arguments: args}
	rec, err := hubproto.JSON{}.Append(c.wbuf[:0], &m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", target, err)
	}
	c.wbuf = rec // WriteMessage copies it into the frame
	// A write deadline 10s ahead, moved only when less than 5s is left:
	// setting one for every frame costs a timer update each.
	if now.After(c.wdeadline) {
		c.wdeadline = now.Add(5 * time.Second)
		_ = c.ws.SetWriteDeadline(now.Add(10 * time.Second))
	}
	return c.ws.WriteMessage(websocket.TextMessage, rec)
}

// invokeWait invokes and waits for the completion (used for JoinGroup
// before the measurement starts). It must not be mixed with other
// invocations on the same client.
func (c *hubClient) invokeWait(ctx context.Context, target string, args ...hubproto.RawValue) error {
	if err := c.invoke(target, args, time.Now()); err != nil {
		return err
	}
	select {
	case errMsg := <-c.done:
		if errMsg != "" {
			return fmt.Errorf("%s: %s", target, errMsg)
		}
		return nil
	case <-c.closed:
		return fmt.Errorf("%s: connection closed: %w", target, c.err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("%s: no completion within 15s", target)
	}
}

// sentTime returns when the invocation of a completion was sent.
func (c *hubClient) sentTime(invocationID string) (int64, bool) {
	id, ok := atoi([]byte(invocationID))
	if !ok || c.sentAt == nil {
		return 0, false
	}
	return c.sentAt[id%int64(len(c.sentAt))].Load(), true
}

// dialMany opens n clients, at most 32 dials at a time, client i on node
// i mod 3. The negotiate connections are closed at the end, so that they
// are not counted as the clients' memory on either side.
func dialMany(ctx context.Context, cl *cluster, hub string, n int,
	onMessage, onCompletion func(*hubClient, *hubproto.Message, time.Time)) ([]*hubClient, error) {
	hc := newHTTPClient(32)
	defer hc.CloseIdleConnections()
	clients, err := openMany(ctx, n, nil, func(i int) (*hubClient, error) {
		node := i % len(cl.nodes)
		c, err := dialHub(ctx, hc, cl.nodes[node].url, hub, node, onMessage, onCompletion)
		if err != nil {
			return nil, fmt.Errorf("client %d on %s: %w", i, cl.nodes[node].id, err)
		}
		return c, nil
	})
	if err != nil {
		closeAll(clients)
		return nil, err
	}
	return clients, nil
}

// openMany opens n connections with open (or does n things), at most 32
// at a time; opened, if not nil, counts them as they connect. It returns
// what was opened (zero where open failed or did not run) and the first
// error, or ctx's.
func openMany[T any](ctx context.Context, n int, opened *counter, open func(i int) (T, error)) ([]T, error) {
	conns := make([]T, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := open(i)
			if err == nil && opened != nil {
				opened.Add(1)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return conns, firstErr
}

// closeAll closes every client that was opened, without a closing
// handshake.
func closeAll(clients []*hubClient) {
	for _, c := range clients {
		if c != nil {
			_ = c.ws.Close()
		}
	}
}

// readEnd is how a client's reading ends: closed once it has, err why.
type readEnd struct {
	closed chan struct{}
	err    error // read after closed
}

// ended reports whether reading ended, and why.
func (e *readEnd) ended() (bool, error) {
	select {
	case <-e.closed:
		return true, e.err
	default:
		return false, nil
	}
}

// dropped counts clients whose connection ended, with the first reason.
func dropped[C interface{ ended() (bool, error) }](clients []C) (int, string) {
	n, why := 0, ""
	for _, c := range clients {
		if done, err := c.ended(); done {
			if n == 0 && err != nil {
				why = err.Error()
			}
			n++
		}
	}
	return n, why
}

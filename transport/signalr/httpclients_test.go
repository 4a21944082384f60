package signalr

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// sseEvent is one Server-Sent Event: its joined data lines and its exact
// bytes on the wire, or the error that ended the stream.
type sseEvent struct {
	data string
	raw  string
	err  error
}

// sseClient reads an SSE stream in a goroutine.
type sseClient struct {
	ts     *testServer
	name   string
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

// openSSE starts the SSE GET of a negotiated connection. It wants 200
// text/event-stream and reads the opening comment before anything is sent.
func (ts *testServer) openSSE(hub, token string) *sseClient {
	ts.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.hubURL(hub, "id="+url.QueryEscape(token)), nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		got <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case r := <-got:
		if r.err != nil {
			ts.t.Fatalf("SSE GET: got error %v, want a response", r.err)
		}
		resp = r.resp
	case <-time.After(waitTimeout):
		ts.t.Fatalf("SSE GET: got no response headers in %s, want them at once", waitTimeout)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		ts.t.Fatalf("SSE GET: got %d %q (%s), want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	br := bufio.NewReader(resp.Body)
	opening := make(chan string, 1)
	go func() {
		b := make([]byte, 3)
		n, _ := io.ReadFull(br, b)
		opening <- string(b[:n])
	}()
	select {
	case s := <-opening:
		if s != ":\r\n" {
			ts.t.Fatalf("SSE stream start: got %q, want %q", s, ":\r\n")
		}
	case <-time.After(waitTimeout):
		ts.t.Fatalf("SSE stream start: got nothing in %s, want %q flushed at once", waitTimeout, ":\r\n")
	}
	c := &sseClient{ts: ts, name: "sse " + hub, resp: resp, cancel: cancel, events: make(chan sseEvent, 1024)}
	go c.read(br)
	return c
}

func (c *sseClient) read(br *bufio.Reader) {
	defer close(c.events)
	var data []string
	var raw strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.events <- sseEvent{err: err}
			return
		}
		raw.WriteString(line)
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		switch {
		case line == "":
			if data != nil {
				c.events <- sseEvent{data: strings.Join(data, "\n"), raw: raw.String()}
			}
			data = nil
			raw.Reset()
		case strings.HasPrefix(line, ":"):
			raw.Reset() // a comment
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		default:
			c.events <- sseEvent{err: io.ErrUnexpectedEOF, raw: line}
			return
		}
	}
}

// event returns the next event.
func (c *sseClient) event() sseEvent {
	c.ts.t.Helper()
	select {
	case e, ok := <-c.events:
		if !ok || e.err != nil {
			c.ts.t.Fatalf("%s: got stream end (%v, %q), want an event", c.name, e.err, e.raw)
		}
		return e
	case <-time.After(waitTimeout):
		c.ts.t.Fatalf("%s: got no event in %s, want one", c.name, waitTimeout)
	}
	return sseEvent{}
}

// ended waits for the stream to end and returns the events before the end.
func (c *sseClient) ended() []sseEvent {
	c.ts.t.Helper()
	var got []sseEvent
	for {
		select {
		case e, ok := <-c.events:
			if !ok || e.err != nil {
				return got
			}
			got = append(got, e)
		case <-time.After(waitTimeout):
			c.ts.t.Fatalf("%s: stream still open after %s, want it ended", c.name, waitTimeout)
		}
	}
}

// pollResult is the answer to one long poll.
type pollResult struct {
	status  int
	body    string
	elapsed time.Duration
}

// poll sends one long poll and returns its answer.
func (ts *testServer) poll(hub, token string) pollResult {
	ts.t.Helper()
	start := time.Now()
	resp, body := ts.do(http.MethodGet, ts.hubURL(hub, "id="+url.QueryEscape(token)+"&_=1"), nil, nil)
	return pollResult{status: resp.StatusCode, body: string(body), elapsed: time.Since(start)}
}

// pollAsync sends a long poll in the background.
func (ts *testServer) pollAsync(hub, token string) <-chan pollResult {
	out := make(chan pollResult, 1)
	go func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.hubURL(hub, "id="+url.QueryEscape(token)), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- pollResult{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- pollResult{status: resp.StatusCode, body: string(b), elapsed: time.Since(start)}
	}()
	return out
}

// awaitPoll waits for a background poll's answer.
func (ts *testServer) awaitPoll(ch <-chan pollResult) pollResult {
	ts.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout + time.Second):
		ts.t.Fatalf("long poll: got no answer in %s, want one", waitTimeout)
	}
	return pollResult{}
}

// pollPending waits until a poll of the token's connection is pending on
// the server.
func (ts *testServer) pollPending(token string) {
	ts.t.Helper()
	waitFor(ts.t, "a pending long poll", func() (bool, string) {
		c := ts.srv.lookup(token)
		if c == nil {
			return false, "no connection"
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.poll != nil && c.poll.running, "not polling"
	})
}

// pendingPoll starts a background poll of the token's connection and
// waits until it is pending on the server.
func (ts *testServer) pendingPoll(hub, token string) <-chan pollResult {
	ts.t.Helper()
	ch := ts.pollAsync(hub, token)
	ts.pollPending(token)
	return ch
}

// openLP negotiates a long-polling connection and completes a JSON
// handshake over it.
func (ts *testServer) openLP(hub string) negotiation {
	ts.t.Helper()
	n := ts.negotiate(hub, "")
	if r := ts.poll(hub, n.ConnectionToken); r.status != http.StatusOK || r.body != "" {
		ts.t.Fatalf("first poll: got %d %q, want 200 with an empty body", r.status, r.body)
	}
	ts.post(hub, n.ConnectionToken, handshakeJSON)
	if r := ts.poll(hub, n.ConnectionToken); r.status != http.StatusOK || r.body != "{}"+rs {
		ts.t.Fatalf("poll after handshake: got %d %q, want 200 %q", r.status, r.body, "{}"+rs)
	}
	return n
}

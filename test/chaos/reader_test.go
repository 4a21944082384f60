package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// message is one message of the native stream, with the publisher's
// payload id (its first argument).
type message struct {
	Index     uint64          `json:"index"`
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
	id        string
}

// parseMessage decodes a stream message and its payload id.
func parseMessage(data []byte) (message, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("message %q: %w", data, err)
	}
	var args []string
	if err := json.Unmarshal(m.Arguments, &args); err != nil || len(args) != 2 || m.Target != "chaos" {
		return m, fmt.Errorf("message %q is not one of the publisher's", data)
	}
	m.id = args[0]
	return m, nil
}

// reader follows the hub's native SSE stream starting on its home node,
// from the beginning. Whenever its stream ends, fails, answers an error,
// or its node is marked down (killed, cut off, removed), it resumes on the
// next node that is up with its last cursor, sent as Last-Event-ID and
// after= alike.
type reader struct {
	c    *cluster
	hub  string
	home int

	mu       sync.Mutex
	msgs     []message
	resumes  int            // streams opened after the first
	servedBy map[string]int // messages received from each node
	errs     []string       // protocol violations

	cancel context.CancelFunc
	done   chan struct{}
}

// startReaders starts one reader per node.
func startReaders(c *cluster, hub string) []*reader {
	var rs []*reader
	for i := range c.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		r := &reader{c: c, hub: hub, home: i, servedBy: map[string]int{}, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(r.done); r.run(ctx) }()
		c.t.Cleanup(r.halt)
		rs = append(rs, r)
	}
	return rs
}

// halt stops the reader and waits for it.
func (r *reader) halt() {
	r.cancel()
	<-r.done
}

func (r *reader) String() string { return "reader@" + r.c.nodes[r.home].id }

// run reads until ctx ends.
func (r *reader) run(ctx context.Context) {
	var after uint64
	cur := r.home
	for opened := 0; ctx.Err() == nil; {
		n := r.c.nodes[cur%len(r.c.nodes)]
		up, gone := n.liveness()
		if !up {
			cur++
			if cur%len(r.c.nodes) == r.home {
				sleepCtx(ctx, 50*time.Millisecond) // nothing is up: wait
			}
			continue
		}
		if opened > 0 {
			r.mu.Lock()
			r.resumes++
			r.mu.Unlock()
		}
		opened++
		after = r.follow(ctx, n, gone, after)
		cur++
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// follow reads one stream of n from after until it ends, n goes down or
// ctx ends, and returns the last cursor.
func (r *reader) follow(ctx context.Context, n *node, gone <-chan struct{}, after uint64) uint64 {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url("/v1/hubs/"+r.hub+"/stream?after="+strconv.FormatUint(after, 10)), nil)
	if err != nil {
		r.fail("new request: %v", err)
		return after
	}
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	}
	// A 503 while the node is not caught up reads nothing: read elsewhere.
	testkit.ReadSSE(streamHTTP, req, func(ev testkit.Event) bool {
		switch {
		case ev.Event == "reset":
			r.fail("%s after %d: unexpected reset %s (nothing is trimmed in these tests)", n, after, ev.Data)
			return false
		case ev.Event == "draining" || ev.ID == "":
			// a comment, retry, or the end of a stream of a stopping node
		default:
			m, err := parseMessage([]byte(ev.Data))
			if err != nil || strconv.FormatUint(m.Index, 10) != ev.ID {
				r.fail("%s: event id %s, data %s: %v", n, ev.ID, ev.Data, err)
				return false
			}
			if m.Index <= after {
				r.fail("%s after %d sent index %d", n, after, m.Index)
				return false
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.servedBy[n.id]++
			r.mu.Unlock()
			after = m.Index
		}
		return true
	})
	return after
}

func (r *reader) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// last is the highest index received.
func (r *reader) last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return 0
	}
	return r.msgs[len(r.msgs)-1].Index
}

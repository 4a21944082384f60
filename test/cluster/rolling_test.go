package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// resumingReader follows a hub's native SSE stream and, whenever its
// stream ends or fails, resumes on the next node from its last cursor, as
// a client behind a balancer would.
type resumingReader struct {
	nodes   []*node
	baseURL []string // read once: node fields belong to the test goroutine
	hub     string

	mu      sync.Mutex
	msgs    []streamMessage
	drained int      // streams that ended with "event: draining"
	errs    []string // protocol violations
}

func newResumingReader(nodes []*node, hub string) *resumingReader {
	r := &resumingReader{nodes: nodes, hub: hub}
	for _, n := range nodes {
		r.baseURL = append(r.baseURL, n.baseURL())
	}
	return r
}

// run reads until ctx ends.
func (r *resumingReader) run(ctx context.Context) {
	var after uint64
	for i := 0; ctx.Err() == nil; i++ {
		after = r.follow(ctx, r.baseURL[i%len(r.baseURL)], after)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// follow reads one stream from after and returns the last cursor seen.
func (r *resumingReader) follow(ctx context.Context, base string, after uint64) uint64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/hubs/"+r.hub+"/stream?after="+strconv.FormatUint(after, 10), nil)
	if err != nil {
		return after
	}
	// A 503 while the node is not ready reads nothing: go to the next node.
	testkit.ReadSSE(streamClient, req, func(ev testkit.Event) bool {
		switch {
		case ev.Event == "draining":
			var d struct{ After uint64 }
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.After != after {
				r.fail("draining event %q from %s, want after=%d", ev.Data, base, after)
			}
			r.mu.Lock()
			r.drained++
			r.mu.Unlock()
		case ev.ID != "":
			var m streamMessage
			if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || strconv.FormatUint(m.Index, 10) != ev.ID {
				r.fail("message %q id %q from %s: %v", ev.Data, ev.ID, base, err)
				return false
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
			after = m.Index
		}
		return true
	})
	return after
}

func (r *resumingReader) fail(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *resumingReader) last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return 0
	}
	return r.msgs[len(r.msgs)-1].Index
}

// statefulSoakClient runs test/signalr/rolling-client.mjs: the official
// client with withStatefulReconnect() behind a balancer that checks
// /readyz. It returns once the client is connected; summary waits for its
// report after the "done" message.
func statefulSoakClient(t *testing.T, nodes []*node, hub string, targets ...string) (connID string, summary func() soakSummary) {
	t.Helper()
	dir := moduleDir(t, "test/signalr")
	ensureNodeModules(t, dir)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
	}
	cmd := exec.Command("node", "rolling-client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BACKPLANE_NODES="+strings.Join(urls, ","), "BACKPLANE_HUB="+hub,
		"BACKPLANE_TARGETS="+strings.Join(targets, ","))
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the stateful client: %v", err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "READY ") {
			t.Fatalf("the stateful client did not connect: %q %s", l, stderr.String())
		}
		connID = strings.TrimPrefix(l, "READY ")
	case <-time.After(30 * time.Second):
		t.Fatalf("the stateful client did not connect within 30 s: %s", stderr.String())
	}
	return connID, func() soakSummary {
		t.Helper()
		var sum soakSummary
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stateful client ended without a summary: %v %s", <-exited, stderr.String())
				}
				if rest, found := strings.CutPrefix(l, "SUMMARY "); found {
					if err := json.Unmarshal([]byte(rest), &sum); err != nil {
						t.Fatalf("summary %q: %v", rest, err)
					}
					sum.Stderr = stderr.String()
					return sum
				}
			case <-timeout:
				t.Fatalf("no summary from the stateful client within 60 s: %s", stderr.String())
			}
		}
	}
}

// soakSummary is rolling-client.mjs's report.
type soakSummary struct {
	ConnectionID string   `json:"connectionId"`
	Received     []string `json:"received"`
	Closed       *string  `json:"closed"`
	Reconnecting int      `json:"reconnecting"`
	Stderr       string   `json:"-"` // the client's own log, for failures
}

// A rolling restart of all three nodes (SIGTERM, restart, wait for
// /readyz, next), the leader included, under a steady publish load: every
// node stops within its shutdown timeout, every acknowledged message
// reaches a native reader that resumes on whichever node serves it and a
// stateful SignalR client behind a balancer, exactly once and in order,
// the SignalR client sees no error and keeps its connection, and no
// publish fails for good.
func TestRollingRestartUnderLoad(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{WriteTimeout: 3 * time.Second})
	const hub = "orders"
	leader := waitMembers(t, 15*time.Second, nodes...)
	connID, soak := statefulSoakClient(t, nodes, hub, "t-w0", "t-w1")

	pub := newPublisher(nodes, hub)
	stopPublishers := pub.start(t, 2)
	reader := newResumingReader(nodes, hub)
	ctx, cancelReader := context.WithCancel(context.Background())
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); reader.run(ctx) }()
	defer func() { cancelReader(); <-readerDone }()

	// Followers first, the leader last, as docs/operations.md advises; the
	// leader hands over leadership when it stops.
	order := append(without(nodes, leader), leader)
	for _, n := range order {
		before := pub.count.Load()
		waitFor(t, 20*time.Second, "50 more acknowledged publishes", func() (bool, string) {
			c := pub.count.Load()
			return c >= before+50, fmt.Sprintf("%d acknowledged", c)
		})
		start := time.Now()
		n.stop() // fails the test if SIGTERM does not end it within 10 s
		t.Logf("%s stopped %s after SIGTERM", n, time.Since(start).Round(time.Millisecond))
		restart(t, n)
		waitMembers(t, 30*time.Second, nodes...)
	}
	before := pub.count.Load()
	waitFor(t, 20*time.Second, "50 more acknowledged publishes after the last restart", func() (bool, string) {
		c := pub.count.Load()
		return c >= before+50, fmt.Sprintf("%d acknowledged", c)
	})
	stopPublishers()
	pub.reportFailures(t)
	var maxAcked uint64
	for _, m := range pub.acked {
		maxAcked = max(maxAcked, m.Index)
	}
	waitFor(t, 20*time.Second, "the reader to reach the last acknowledged message", func() (bool, string) {
		last := reader.last()
		return last >= maxAcked, fmt.Sprintf("reader at %d, last acknowledged %d", last, maxAcked)
	})
	cancelReader()
	<-readerDone
	for _, e := range reader.errs {
		t.Error(e)
	}
	pub.check(t, "the resuming reader", reader.msgs)
	if !strings.Contains(leader.logs.String(), "leadership transferred before stopping") {
		t.Errorf("the leader %s stopped without handing over leadership", leader)
	}
	if reader.drained == 0 {
		t.Errorf("the reader never got a draining event though every node was stopped with SIGTERM")
	}
	t.Logf("%d publishes acknowledged; the reader resumed after %d draining events", len(pub.acked), reader.drained)

	if pr, err := publish(nodes[0], hub, messageBody("done"), ""); err != nil || pr.Status != http.StatusAccepted {
		t.Fatalf("publish done: %v %v", pr, err)
	}
	sum := soak()
	if sum.Closed != nil || sum.Reconnecting != 0 || sum.ConnectionID != connID {
		t.Errorf("the stateful client saw an error: closed %v, reconnecting %d, connection %s (was %s); its log:\n%s", deref(sum.Closed), sum.Reconnecting, sum.ConnectionID, connID, sum.Stderr)
	}
	var want []string
	for _, m := range reader.msgs { // every acknowledged message, in index order (checked above)
		var args []string
		_ = json.Unmarshal(m.Arguments, &args)
		want = append(want, args[0])
	}
	if d := diffIDs(sum.Received, want); d != "" {
		t.Errorf("the stateful SignalR client: %s", d)
	}
	handedOver, tookOver := 0, 0
	for _, n := range nodes {
		handedOver += strings.Count(n.logs.String(), "stateful connections will resume on other nodes")
		tookOver += strings.Count(n.logs.String(), "took over a stateful connection")
	}
	if handedOver == 0 || tookOver == 0 {
		t.Errorf("the stateful connection was never handed over (%d drains with stateful connections, %d takeovers): its holder was not restarted?", handedOver, tookOver)
	}
	t.Logf("the stateful client %s received %d messages through the rolling restart (%d hand-overs, %d takeovers)", connID, len(sum.Received), handedOver, tookOver)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// diffIDs describes how got differs from want: a gap, a duplicate or a
// reordering; "" when equal.
func diffIDs(got, want []string) string {
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			return fmt.Sprintf("payload %s received twice", id)
		}
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("position %d is %s, want %s (of %d received, %d expected)", i, got[i], want[i], len(got), len(want))
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("received %d messages, want %d", len(got), len(want))
	}
	return ""
}

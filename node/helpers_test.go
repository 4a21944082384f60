package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// testCluster runs nodes in this process on loopback ports picked by the
// kernel, with tightened Raft timings.
type testCluster struct {
	t     testing.TB
	nodes []*testNode
}

type testNode struct {
	*Node
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// clusterOptions configures startCluster; zero values are fine.
type clusterOptions struct {
	size       int
	adminToken string
	accessKey  string
	tweak      func(*Config)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BACKPLANE_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startCluster(t testing.TB, opts clusterOptions) *testCluster {
	t.Helper()
	if opts.size == 0 {
		opts.size = 3
	}
	c := &testCluster{t: t}
	for i := 0; i < opts.size; i++ {
		cfg := Config{
			ID:           fmt.Sprintf("node%d", i+1),
			DataDir:      filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i+1)),
			HTTPAddr:     "127.0.0.1:0",
			RaftAddr:     "127.0.0.1:0",
			AdminToken:   opts.adminToken,
			AccessKey:    opts.accessKey,
			WriteTimeout: 3 * time.Second,
			JoinTimeout:  20 * time.Second,
			Logger:       testLogger(t),
		}
		if i > 0 {
			cfg.Join = []string{c.nodes[0].HTTPAddr()}
		}
		if opts.tweak != nil {
			opts.tweak(&cfg)
		}
		c.nodes = append(c.nodes, c.start(cfg))
		if i == 0 {
			c.waitLeader()
		}
	}
	c.waitMembers(opts.size)
	return c
}

func (c *testCluster) start(cfg Config) *testNode {
	c.t.Helper()
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	c.t.Cleanup(tn.stop)
	return tn
}

func (n *testNode) stop() {
	n.stopOnce.Do(func() {
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(15 * time.Second):
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
var waitFor = testkit.WaitFor

func (c *testCluster) leader() *testNode {
	for _, n := range c.nodes {
		if n.raft.IsLeader() {
			return n
		}
	}
	return nil
}

func (c *testCluster) waitLeader() *testNode {
	c.t.Helper()
	var l *testNode
	waitFor(c.t, 10*time.Second, "a leader", func() (bool, string) {
		l = c.leader()
		return l != nil, "no leader"
	})
	return l
}

func (c *testCluster) followers() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if !n.raft.IsLeader() {
			out = append(out, n)
		}
	}
	return out
}

// waitMembers waits until every node lists size members with HTTP
// addresses and agrees on the leader.
func (c *testCluster) waitMembers(size int) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, fmt.Sprintf("%d members everywhere", size), func() (bool, string) {
		var leader string
		for _, n := range c.nodes {
			st, err := n.Status()
			if err != nil {
				return false, err.Error()
			}
			if len(st.Members) != size {
				return false, fmt.Sprintf("%s sees %d members", n.ID(), len(st.Members))
			}
			for _, m := range st.Members {
				if m.HTTPAddr == "" {
					return false, fmt.Sprintf("%s lacks the HTTP address of %s", n.ID(), m.ID)
				}
			}
			if leader == "" {
				leader = st.Leader.ID
			}
			if st.Leader.ID == "" || st.Leader.ID != leader {
				return false, fmt.Sprintf("%s sees leader %q, others %q", n.ID(), st.Leader.ID, leader)
			}
		}
		return true, ""
	})
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func doHTTP(t *testing.T, method, url string, body []byte, header map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

func (n *testNode) url(path string) string { return "http://" + n.HTTPAddr() + path }

// publish sends a REST broadcast and returns the committed index.
func (n *testNode) publish(t *testing.T, hub, target string, args string, header map[string]string) uint64 {
	t.Helper()
	body := fmt.Sprintf(`{"target":%q,"arguments":%s}`, target, args)
	res := doHTTP(t, http.MethodPost, n.url("/api/v1/hubs/"+hub), []byte(body), header)
	if res.status != http.StatusAccepted {
		t.Fatalf("publish via %s: status %d: %s", n.ID(), res.status, res.body)
	}
	var out struct{ Index uint64 }
	if err := json.Unmarshal(res.body, &out); err != nil || out.Index == 0 {
		t.Fatalf("publish via %s: body %q: %v", n.ID(), res.body, err)
	}
	if got := res.header.Get("Backplane-Index"); got != fmt.Sprint(out.Index) {
		t.Fatalf("Backplane-Index header %q, body index %d", got, out.Index)
	}
	return out.Index
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

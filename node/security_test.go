package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// The 3-byte body that used to stop every replica: a batch of one command
// of the unknown type 0x7f. It is refused before it reaches the log, and
// so is every malformed command in a forwarded batch.
func TestMalformedForwardedBatchIsRefusedBeforeTheLog(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	leader := c.waitLeader()
	// Let the start-up entries land first (addresses, the feature level),
	// so that the applied index moves only for what this test sends.
	waitFor(t, 10*time.Second, "every member's addresses and the feature level are committed", func() (bool, string) {
		nodes, err := leader.fsm.Nodes()
		level := leader.fsm.ClusterLevel()
		return err == nil && len(nodes) == 3 && level == fsm.Level,
			fmt.Sprintf("%d records (%v), level %d of %d", len(nodes), err, level, fsm.Level)
	})
	before := leader.fsm.AppliedIndex()
	valid := fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "t", Arguments: []byte("[]")})
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"unknown type 0x7f", []byte{1, 1, 0x7f}},
		{"type 0", []byte{1, 1, 0}},
		{"truncated publish", fsm.EncodeBatch([]fsm.Command{valid[:len(valid)-3]})},
		{"a valid publish and a forged node record", fsm.EncodeBatch([]fsm.Command{valid, {byte(fsm.CmdNodeInfo), 9}})},
		{"an invalid hub", fsm.EncodeBatch([]fsm.Command{fsm.EncodePublish(&fsm.Publish{Hub: "9", Audience: fsm.ToAll, Target: "t"})})},
		{"not a batch", []byte("hello")},
	} {
		res := doHTTP(t, http.MethodPost, leader.url(applyPath), tc.body, map[string]string{"Content-Type": commandsMIMEType})
		if res.status != http.StatusBadRequest {
			t.Fatalf("%s: status %d (%s), want 400", tc.name, res.status, res.body)
		}
	}
	if got := leader.fsm.AppliedIndex(); got != before {
		t.Fatalf("applied index moved from %d to %d: a refused batch reached the log", before, got)
	}
	// Every replica still follows the log.
	idx := c.followers()[0].publish(t, "chat", "t", "[]", nil)
	for _, n := range c.nodes {
		waitFor(t, 5*time.Second, n.ID()+" applies the next publish", func() (bool, string) {
			return n.fsm.LastMessage() == idx, fmt.Sprintf("last %d", n.fsm.LastMessage())
		})
	}
}

// A malformed command proposed on a follower gets the same error, and the
// same HTTP status, as on the leader: it never leaves the node.
func TestProposeRejectsMalformedCommandsOnEveryNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	leader := c.waitLeader()
	for _, n := range []*testNode{leader, c.followers()[0]} {
		_, err := n.proposer.ProposeOne(context.Background(), fsm.Command{0x7f})
		if !errors.Is(err, fsm.ErrInvalidCommand) || statusOf(err) != http.StatusBadRequest {
			t.Fatalf("%s: ProposeOne(type 0x7f): got %v (status %d), want an invalid command (400)", n.ID(), err, statusOf(err))
		}
		// A well-formed command rejected on apply carries its rejection in
		// the one error too, with the same status on every node.
		close := fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: "chat", ConnID: "c1", NodeID: "elsewhere"})
		if _, err := n.proposer.ProposeOne(context.Background(), fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: "c1", NodeID: "node1"})); err != nil {
			t.Fatalf("%s: open: %v", n.ID(), err)
		}
		_, err = n.proposer.ProposeOne(context.Background(), close)
		if !errors.Is(err, fsm.ErrInvalidCommand) || statusOf(err) != http.StatusBadRequest {
			t.Fatalf("%s: close by a node that does not hold the connection: got %v (status %d), want a rejection (400)", n.ID(), err, statusOf(err))
		}
	}
}

// DNS rebinding: a page under its own name reaches 127.0.0.1, with an
// Origin that matches its Host. Loopback admin without a token and the
// node-to-node endpoints answer only a Host that names loopback.
func TestRebindingHostCannotReachAdminOrInternalEndpoints(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	rebound := map[string]string{"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
	hostOnly := map[string]string{"Host": "evil.example:8080"}
	for _, tc := range []struct {
		method, path string
		body         []byte
		header       map[string]string
	}{
		{http.MethodGet, "/admin/status", nil, rebound},
		{http.MethodGet, "/admin/status", nil, hostOnly},
		{http.MethodPost, "/admin/join", []byte(`{"id":"evil","raft_addr":"127.0.0.1:1"}`), rebound},
		{http.MethodPost, "/admin/join", []byte(`{"id":"evil","raft_addr":"127.0.0.1:1"}`), hostOnly},
		{http.MethodGet, "/debug/pprof/cmdline", nil, hostOnly},
		{http.MethodPost, applyPath, []byte{1, 1, 0x7f}, hostOnly},
		{http.MethodGet, "/admin/status", nil, map[string]string{"X-Forwarded-For": "127.0.0.1"}},
	} {
		res := doHostHTTP(t, tc.method, n.HTTPAddr(), tc.path, tc.body, tc.header)
		if res.status != http.StatusMisdirectedRequest && res.status != http.StatusForbidden {
			t.Fatalf("%s %s with %v: status %d (%s), want 421 or 403", tc.method, tc.path, tc.header, res.status, res.body)
		}
	}
	members, err := n.raft.Members()
	if err != nil || len(members) != 1 {
		t.Fatalf("members: got %v, %v, want only node1", members, err)
	}
	for _, host := range []string{"localhost", n.HTTPAddr(), "localhost:1", "[::1]:80"} {
		if res := doHostHTTP(t, http.MethodGet, n.HTTPAddr(), "/admin/status", nil, map[string]string{"Host": host}); res.status != http.StatusOK {
			t.Fatalf("admin status with Host %q: status %d (%s), want 200", host, res.status, res.body)
		}
	}
}

// -allowed-origins '*' opens /hubs to every origin, never REST, admin,
// pprof or the node-to-node endpoints.
func TestAllowedOriginsDoesNotOpenRESTAdminOrInternal(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, tweak: func(cfg *Config) { cfg.AllowedOrigins = []string{"*"} }})
	n := c.nodes[0]
	cross := map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/hubs/chat", `{"target":"t","arguments":[]}`},
		{http.MethodPut, "/api/v1/hubs/chat/groups/admins/users/mallory", ""},
		{http.MethodGet, "/admin/status", ""},
		{http.MethodPost, "/admin/remove", `{"id":"node1"}`},
		{http.MethodGet, "/debug/pprof/cmdline", ""},
		{http.MethodPost, applyPath, "\x01\x01\x7f"},
	} {
		res := doHTTP(t, tc.method, n.url(tc.path), []byte(tc.body), cross)
		if res.status != http.StatusForbidden {
			t.Fatalf("cross-origin %s %s: status %d (%s), want 403", tc.method, tc.path, res.status, res.body)
		}
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("cross-origin %s %s: Access-Control-Allow-Origin %q, want none", tc.method, tc.path, got)
		}
	}
	if last := n.fsm.LastMessage(); last != 0 {
		t.Fatalf("last message %d, want 0", last)
	}
	// The SignalR endpoint does answer the allowed origin.
	res := doHTTP(t, http.MethodPost, n.url("/hubs/chat/negotiate?negotiateVersion=1"), nil, map[string]string{"Origin": "https://evil.example"})
	if res.status != http.StatusOK || res.header.Get("Access-Control-Allow-Origin") != "https://evil.example" {
		t.Fatalf("negotiate from an allowed origin: status %d, Access-Control-Allow-Origin %q", res.status, res.header.Get("Access-Control-Allow-Origin"))
	}
}

// A body trickled a byte at a time is cut at -http-body-timeout, and an
// idle keep-alive connection at -http-idle-timeout.
func TestSlowBodiesAndIdleConnectionsAreTimedOut(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, tweak: func(cfg *Config) {
		cfg.HTTPBodyTimeout = 500 * time.Millisecond
		cfg.HTTPIdleTimeout = 500 * time.Millisecond
	}})
	n := c.nodes[0]
	conn := sendRawRequest(t, n.HTTPAddr(), "POST /api/v1/hubs/chat", "Content-Length: 100\r\n\r\n{")
	start := time.Now()
	go func() { // trickle: one byte every 100 ms, until the node stops reading
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("slow body: no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: status %d, want 408", resp.StatusCode)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("slow body: answered after %s, want about the 500ms body timeout", took)
	}

	idle := sendRawRequest(t, n.HTTPAddr(), "GET /healthz", "\r\n")
	br := bufio.NewReader(idle)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: got %v, want it closed by the node (EOF)", err)
	}
}

// sendRawRequest dials addr and writes an HTTP/1.1 request for target
// ("METHOD /path") with Host set to addr, then rest: any further header
// lines, the blank line, and as much of a body as the test sends. The
// connection has a 10 s deadline and is closed when the test ends.
func sendRawRequest(t *testing.T, addr, target, rest string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: %s\r\n%s", target, addr, rest); err != nil {
		t.Fatalf("write %s to %s: %v", target, addr, err)
	}
	return conn
}

// doHostHTTP sends a request to addr with the given headers, Host included.
func doHostHTTP(t *testing.T, method, addr, path string, body []byte, header map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

package cluster

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on real processes: each request below once hurt a node or the
// cluster, or let a client do what it must not. Each must now be refused
// and change nothing. (Member authentication, client permissions and
// limits have their own tests in attack_members_test.go and
// attack_clients_test.go.)

// The 3-byte apply that stopped every replica: a batch of one command of
// the unknown type 0x7f, sent to the leader's node-to-node endpoint from
// loopback without a token, plainly and through DNS rebinding.
func TestAttackPoisonPillIsRefusedAndTheClusterGoesOn(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 30*time.Second, nodes...)
	first := mustPublishTo(t, leader, "/api/v1/hubs/chat", messageBody("before"), "")
	before := mustStatus(t, leader).AppliedIndex
	for _, h := range []http.Header{
		{"Content-Type": {"application/vnd.backplane.commands"}},
		{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"http://evil.example:8080"}},
	} {
		res, err := do(http.MethodPost, leader.baseURL()+"/internal/v1/apply", []byte{1, 1, 0x7f}, h)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusBadRequest && res.Status != http.StatusForbidden {
			t.Fatalf("3-byte apply with %v: got %s, want 400 or 403", h, res)
		}
	}
	rebound := rawRequest(t, leader.httpAddr, "POST /internal/v1/apply HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\nContent-Length: 3\r\n\r\n\x01\x01\x7f")
	if rebound != http.StatusMisdirectedRequest && rebound != http.StatusForbidden {
		t.Fatalf("3-byte apply through DNS rebinding: status %d, want 421 or 403", rebound)
	}
	if after := mustStatus(t, leader).AppliedIndex; after != before {
		t.Fatalf("applied index moved from %d to %d: the poison reached the log", before, after)
	}
	next := mustPublishTo(t, nodes[2], "/api/v1/hubs/chat", messageBody("after"), "")
	if next != first+1 {
		t.Fatalf("publish after the attack: index %d, want %d", next, first+1)
	}
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.id+" applies the publish after the attack", func() (bool, string) {
			st, err := status(n)
			if err != nil {
				return false, err.Error()
			}
			return st.Messages.LastMessage == next, fmt.Sprintf("last message %d", st.Messages.LastMessage)
		})
		if !n.running() {
			t.Fatalf("%s exited: %s", n.id, n.proc.ExitText())
		}
	}
}

// DNS rebinding reaches 127.0.0.1 under the attacker's name, with a
// matching Origin: it must not read /admin/status or add a voter.
func TestAttackRebindingCannotAdminister(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1"})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	for _, req := range []string{
		"GET /admin/status HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\n\r\n",
		"GET /debug/pprof/cmdline HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n",
		fmt.Sprintf("POST /admin/join HTTP/1.1\r\nHost: evil.example:8080\r\nOrigin: http://evil.example:8080\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
			len(`{"id":"evil","raft_addr":"127.0.0.1:9"}`), `{"id":"evil","raft_addr":"127.0.0.1:9"}`),
	} {
		if got := rawRequest(t, n.httpAddr, req); got != http.StatusMisdirectedRequest && got != http.StatusForbidden {
			t.Fatalf("%q: status %d, want 421 or 403", strings.SplitN(req, "\r\n", 2)[0], got)
		}
	}
	st := mustStatus(t, n)
	if len(st.Members) != 1 || st.State != "Leader" {
		t.Fatalf("after the rebinding attempts: members %v, state %s, want n1 alone and leading", st.Members, st.State)
	}
}

// -allowed-origins '*' opens /hubs to every website, never REST, admin,
// pprof or the node-to-node endpoints.
func TestAttackCrossOriginWithWildcardOrigins(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ExtraArgs: []string{"-allowed-origins", "*"}})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	cross := http.Header{"Origin": {"https://evil.example"}, "Content-Type": {"text/plain"}}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/hubs/chat", `{"target":"systemNotice","arguments":["pwned"]}`},
		{http.MethodPut, "/api/v1/hubs/chat/groups/admins/users/mallory", ""},
		{http.MethodGet, "/admin/status", ""},
		{http.MethodPost, "/admin/join", `{"id":"evil","raft_addr":"127.0.0.1:9"}`},
		{http.MethodGet, "/debug/pprof/cmdline", ""},
		{http.MethodPost, "/internal/v1/apply", "\x01\x01\x7f"},
	} {
		res, err := do(tc.method, n.baseURL()+tc.path, []byte(tc.body), cross)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("cross-origin %s %s: got %s with Access-Control-Allow-Origin %q, want 403 and none", tc.method, tc.path, res, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	res, err := do(http.MethodGet, n.baseURL()+"/v1/info", nil, http.Header{"Origin": {"https://evil.example"}})
	if err != nil || res.Status != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("/v1/info from another origin: got %v (%v), Access-Control-Allow-Origin %q, want 200 and none", res, err, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if last := mustStatus(t, n).Messages.LastMessage; last != 0 {
		t.Fatalf("last message %d, want 0: a refused request changed the log", last)
	}
}

// A POST that trickles its body a byte a second is cut by the node, with
// the default -http-body-timeout shortened for the test.
func TestAttackSlowBodyIsTimedOut(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ExtraArgs: []string{"-http-body-timeout", "1s", "-http-idle-timeout", "1s"}})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	conn, err := net.Dial("tcp", n.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /api/v1/hubs/chat HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n{", n.httpAddr)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("slow body: the node did not answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 10*time.Second {
		t.Fatalf("slow body: status %d after %s, want 408 within about 1s", resp.StatusCode, time.Since(start))
	}
}

// rawRequest writes a request as given (Host header included) to addr and
// returns the answer's status.
func rawRequest(t *testing.T, addr, req string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: no answer: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

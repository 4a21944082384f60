package cluster

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// signalr2ClusterKey is the members' shared secret; SignalR 2 connection
// and groups tokens are signed with it, so each node verifies the tokens
// the others issued.
const signalr2ClusterKey = "signalr2-test-cluster-key-0123456789"

// TestSignalR2Clients runs the ASP.NET SignalR 2 jQuery client (signalr
// 2.4.3, in jsdom; test/signalr2/relay.test.mjs and scaleout.test.mjs)
// against a three-node cluster: every transport with clients on different
// nodes in groups, relay and REST sends, an ASP.NET Core client on the same
// hub, the /signalr/hubs proxy, and clients behind a balancer without
// affinity (a long-polling client's polls alternate between nodes).
func TestSignalR2Clients(t *testing.T) {
	runSignalR2Suite(t, "relay.test.mjs", "scaleout.test.mjs")
}

// TestSignalR2Failover runs test/signalr2/failover.test.mjs: clients over
// each transport whose node is killed resume on another node with their
// messageId and receive exactly what they missed, in order.
func TestSignalR2Failover(t *testing.T) {
	runSignalR2Suite(t, "failover.test.mjs")
}

// runSignalR2Suite starts a three-node cluster with an access key and a
// cluster key and runs test files of test/signalr2 against it with node's
// test runner; every test must pass and none may be skipped. Arguments
// of the form NAME=value are added to the environment.
func runSignalR2Suite(t *testing.T, args ...string) {
	t.Helper()
	var files, env []string
	for _, a := range args {
		if strings.Contains(a, "=") {
			env = append(env, a)
		} else {
			files = append(files, a)
		}
	}
	dir := moduleDir(t, "test/signalr2")
	ensureNodeModules(t, dir)
	nodes := startCluster(t, 3, nodeOptions{
		ClusterKey: signalr2ClusterKey,
		ExtraArgs:  []string{"-access-key", signalrAccessKey},
	})
	var urls, pids []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
		pids = append(pids, strconv.Itoa(n.proc.Pid()))
	}
	out := runNode(t, dir, 4*time.Minute, append(env,
		"BACKPLANE_NODES="+strings.Join(urls, ","),
		"BACKPLANE_PIDS="+strings.Join(pids, ","),
		"BACKPLANE_ACCESS_KEY="+signalrAccessKey,
	), append([]string{"--test", "--test-reporter=spec"}, files...)...)
	t.Log(out)
	for _, want := range []string{"fail 0", "skipped 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node test summary lacks %q:\n%s", want, out)
		}
	}
}

// TestSignalR2Browser runs test/signalr2/browser.test.mjs: the jQuery
// client 2.4.3 in headless Chromium (served from the npm package, through
// the /signalr/hubs proxy) on every transport across three nodes, and a
// page whose node is killed resuming with every message once, in order.
func TestSignalR2Browser(t *testing.T) {
	chromium := chromiumPath(t)
	runSignalR2Suite(t, "browser.test.mjs", "BACKPLANE_CHROMIUM="+chromium)
}

// lp2 is a SignalR 2 long-polling connection driven by hand, as the
// jQuery client drives it: negotiate, connect, then poll with the last
// messageId.
type lp2 struct {
	t      *testing.T
	id     string
	token  string
	access string // the client's access token
	cursor string
}

// signalr2Query is the query every request of c carries.
func (c *lp2) query(extra url.Values) string {
	q := url.Values{
		"transport":       {"longPolling"},
		"clientProtocol":  {"2.1"},
		"connectionData":  {`[{"name":"chat"}]`},
		"connectionToken": {c.token},
		"access_token":    {c.access},
	}
	for k, v := range extra {
		q[k] = v
	}
	return q.Encode()
}

// connectSignalR2 negotiates and connects a long-polling client on n.
func connectSignalR2(t *testing.T, n *node, user string) *lp2 {
	t.Helper()
	c := &lp2{t: t, access: clientToken(t, user, time.Hour)}
	res, err := do(http.MethodGet, n.baseURL()+"/signalr/negotiate?"+c.query(nil), nil, nil)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("negotiate on %s: %v %v", n, res, err)
	}
	var neg struct{ ConnectionToken, ConnectionId string }
	if err := json.Unmarshal(res.Body, &neg); err != nil {
		t.Fatal(err)
	}
	c.id, c.token = neg.ConnectionId, neg.ConnectionToken
	env, res, err := c.request(n, "connect")
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("connect on %s: %v %v", n, res, err)
	}
	c.cursor = env.C
	return c
}

// signalr2Envelope is a persistent response as the client reads it.
type signalr2Envelope struct {
	C string
	E string
	M []json.RawMessage
}

// request sends /connect or /poll with the connection's cursor.
func (c *lp2) request(n *node, what string) (signalr2Envelope, httpResult, error) {
	form := url.Values{}
	if what != "connect" {
		form.Set("messageId", c.cursor)
	}
	res, err := do(http.MethodPost, n.baseURL()+"/signalr/"+what+"?"+c.query(nil), []byte(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	var env signalr2Envelope
	if err == nil && res.Status == http.StatusOK {
		err = json.Unmarshal(res.Body, &env)
	}
	return env, res, err
}

// connectionExists asks the REST API (through via) whether the
// connection is open.
func connectionExists(t *testing.T, via *node, id string) bool {
	t.Helper()
	res := restAPI{t: t, v: "2024-12-01"}.call(via, http.MethodHead, "/api/hubs/chat/connections/"+id, nil)
	switch res.Status {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	t.Fatalf("HEAD connection %s via %s: %v", id, via, res)
	return false
}

// TestSignalR2RestartedNodeKeepsItsLiveClients: a node killed and
// started again expires the connections its earlier run held, except
// the SignalR 2 connections whose clients came back to it (their polls
// reach it again); and a REST DELETE of such a connection in the node's
// first seconds ends it for good (the client is told, and nothing
// records it again).
func TestSignalR2RestartedNodeKeepsItsLiveClients(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{
		ClusterKey: signalr2ClusterKey,
		ExtraArgs:  []string{"-access-key", clientAccessKey},
	})
	a, b := nodes[0], nodes[1]
	alive := connectSignalR2(t, a, "alive")
	dead := connectSignalR2(t, a, "dead") // its client never comes back
	for _, c := range []*lp2{alive, dead} {
		waitFor(t, 10*time.Second, "the connection to be recorded everywhere", func() (bool, string) {
			return connectionExists(t, b, c.id), "not yet"
		})
	}

	kill9(t, a)
	logStart := a.logs.Len()
	// The live client polls a until it answers, as the jQuery client
	// does while its node is down.
	polled := make(chan signalr2Envelope, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			env, res, err := alive.request(a, "poll")
			if err == nil && res.Status == http.StatusOK {
				polled <- env
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	restart(t, a)
	waitFor(t, 30*time.Second, "the restarted node to expire its earlier run's connections", func() (bool, string) {
		return strings.Contains(a.logs.Since(logStart), "expired connections held by an earlier run of this node"), "no expiry logged yet"
	})
	waitFor(t, 10*time.Second, "the dead client's connection to be expired", func() (bool, string) {
		return !connectionExists(t, b, dead.id), "still open"
	})
	if !connectionExists(t, b, alive.id) {
		t.Fatal("the restarted node expired the connection of a client that polls it")
	}

	// In the node's first seconds, a REST DELETE through another node.
	restAPI{t: t, v: "2024-12-01"}.must(b, http.StatusOK, http.MethodDelete, "/api/hubs/chat/connections/"+alive.id, nil)
	select {
	case env := <-polled:
		if !strings.Contains(env.E, "closed by the server") {
			t.Fatalf("the poll in progress answered %+v, want the connection closed", env)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the poll in progress was not answered after the REST DELETE")
	}
	env, res, err := alive.request(a, "poll")
	if err != nil || res.Status != http.StatusOK || !strings.Contains(env.E, "closed by the server") {
		t.Fatalf("a poll after the REST DELETE: %+v %v %v", env, res, err)
	}
	for _, n := range nodes {
		if connectionExists(t, n, alive.id) {
			t.Fatalf("the deleted connection is open again (asked %s)", n)
		}
	}
}

package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBothListenersOnPortZero starts the binary exactly as the contract
// allows: -http 127.0.0.1:0 -raft 127.0.0.1:0 (port 0: pick a free port).
// The node must listen on two different ports and report them in
// addresses.json.
func TestBothListenersOnPortZero(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "solo", HTTPListen: "127.0.0.1:0", RaftListen: "127.0.0.1:0"})
	if n.httpAddr == n.raftAddr || strings.HasSuffix(n.httpAddr, ":0") || strings.HasSuffix(n.raftAddr, ":0") {
		t.Errorf("addresses.json has http %s raft %s, want two different bound ports", n.httpAddr, n.raftAddr)
	}
	waitFor(t, 15*time.Second, "solo to be ready", func() (bool, string) { return ready(n) })
}

// TestJoinThroughAdminEndpoint forms a three-node cluster with -join (the
// third node joins through a follower, so its join is forwarded to the
// leader) and checks the admin join rules: the same join again is a no-op,
// a conflicting id or Raft address is 409, and nothing changes.
func TestJoinThroughAdminEndpoint(t *testing.T) {
	n1 := startNode(t, nodeOptions{ID: "n1"})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n1) })
	n2 := startNode(t, nodeOptions{ID: "n2", Join: []string{n1.httpAddr}})
	leader := waitMembers(t, 30*time.Second, n1, n2)
	if leader != n1 {
		t.Fatalf("leader after n2 joined: got %s, want n1 (the bootstrapped node)", leader)
	}
	// n2 is a follower: n3's join goes through it and is forwarded.
	n3 := startNode(t, nodeOptions{ID: "n3", Join: []string{"http://" + n2.httpAddr}})
	nodes := []*node{n1, n2, n3}
	leader = waitMembers(t, 30*time.Second, nodes...)
	if leader != n1 {
		t.Errorf("leader after n3 joined: got %s, want n1", leader)
	}
	want := expectedMembers(nodes...)
	before := map[string]nodeStatus{}
	for _, n := range nodes {
		before[n.id] = mustStatus(t, n)
	}

	type joinBody struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		HTTPAddr string `json:"http_addr"`
	}
	cases := []struct {
		name string
		body joinBody
		want int
	}{
		{"same id and addresses again", joinBody{n2.id, n2.raftAddr, n2.httpAddr}, http.StatusOK},
		{"existing id, another raft_addr", joinBody{n2.id, "127.0.0.1:1", n2.httpAddr}, http.StatusConflict},
		{"new id, raft_addr of a member", joinBody{"n4", n3.raftAddr, "127.0.0.1:2"}, http.StatusConflict},
		{"new id, http_addr of a member", joinBody{"n4", "127.0.0.1:3", n3.httpAddr}, http.StatusConflict},
		{"malformed id", joinBody{"bad id!", "127.0.0.1:4", "127.0.0.1:5"}, http.StatusBadRequest},
	}
	for _, c := range cases {
		// Send each to the leader and to a follower (which forwards it).
		for _, via := range []*node{n1, n3} {
			res, err := adminPost(via, "/admin/join", c.body)
			if err != nil {
				t.Fatalf("%s via %s: %v", c.name, via, err)
			}
			if res.Status != c.want {
				t.Errorf("join %s via %s: got %s, want %d", c.name, via, res, c.want)
			}
			if c.want == http.StatusOK {
				var ans struct {
					Added *bool `json:"added"`
				}
				if err := json.Unmarshal(res.Body, &ans); err != nil || ans.Added == nil || *ans.Added {
					t.Errorf("join %s via %s: body %s, want \"added\": false", c.name, via, res.Body)
				}
			}
		}
	}
	for _, n := range nodes {
		st := mustStatus(t, n)
		if got := sortedMembers(st.Members); !slices.Equal(got, want) {
			t.Errorf("%s after the joins: members %+v, want %+v", n, got, want)
		}
		if st.Leader.ID != n1.id {
			t.Errorf("%s after the joins: leader %q, want %q", n, st.Leader.ID, n1.id)
		}
		if st.LastIndex != before[n.id].LastIndex {
			t.Errorf("%s after no-op and refused joins: last_index %d, want it unchanged at %d", n, st.LastIndex, before[n.id].LastIndex)
		}
	}
}

// TestAdminToken checks -admin-token: admin endpoints need the token (401
// without, 403 when wrong), health endpoints stay open, and nodes use the
// token for their own calls (join, forwarded writes). A node with the wrong
// token cannot join.
func TestAdminToken(t *testing.T) {
	const token = "s3cret-admin-token"
	nodes := startCluster(t, 2, nodeOptions{AdminToken: token})
	n1, n2 := nodes[0], nodes[1]

	for _, n := range nodes {
		for _, c := range []struct {
			name   string
			header http.Header
			want   int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"wrong token", http.Header{"Authorization": {"Bearer not-the-token"}}, http.StatusForbidden},
			{"not a bearer token", http.Header{"Authorization": {"Basic " + token}}, http.StatusUnauthorized},
			{"right token", http.Header{"Authorization": {"Bearer " + token}}, http.StatusOK},
		} {
			res, err := do(http.MethodGet, n.baseURL()+"/admin/status", nil, c.header)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.want {
				t.Errorf("GET /admin/status on %s with %s: got %s, want %d", n, c.name, res, c.want)
			}
		}
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			res, err := do(http.MethodGet, n.baseURL()+path, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != http.StatusOK {
				t.Errorf("GET %s on %s without a token: got %d, want 200 (it stays open)", path, n, res.Status)
			}
		}
		// A join or remove without the token changes nothing.
		body, _ := json.Marshal(map[string]string{"id": "intruder", "raft_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:10"})
		res, err := do(http.MethodPost, n.baseURL()+"/admin/join", body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusUnauthorized {
			t.Errorf("POST /admin/join on %s without a token: got %s, want 401", n, res)
		}
		res, err = do(http.MethodPost, n.baseURL()+"/admin/remove", []byte(`{"id":"n1"}`), http.Header{"Authorization": {"Bearer wrong"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusForbidden {
			t.Errorf("POST /admin/remove on %s with a wrong token: got %s, want 403", n, res)
		}
	}

	// Forwarded writes use the token between nodes.
	follower := n2
	if st := mustStatus(t, n1); st.Leader.ID == n2.id {
		follower = n1
	}
	idx := mustPublishTo(t, follower, "/api/v1/hubs/chat", messageBody("t", "via follower"), "")
	waitFor(t, 10*time.Second, "the forwarded message on both nodes", func() (bool, string) {
		for _, n := range nodes {
			msgs, err := readAll(n, "chat", 0)
			if err != nil {
				return false, err.Error()
			}
			if len(msgs) != 1 || msgs[0].Index != idx {
				return false, fmt.Sprintf("%s has %v, want one message at %d", n, msgs, idx)
			}
		}
		return true, ""
	})

	// The right token lets a third node join through a follower.
	n3 := startNode(t, nodeOptions{ID: "n3", AdminToken: token, Join: []string{follower.httpAddr}})
	waitMembers(t, 30*time.Second, n1, n2, n3)

	// A node with the wrong token is refused and gives up.
	bad := startNode(t, nodeOptions{ID: "n4", AdminToken: "wrong-token", Join: []string{n1.httpAddr}})
	select {
	case <-bad.proc.Exited():
		if !strings.Contains(bad.logs.String(), "check -admin-token") {
			t.Errorf("n4 with a wrong token exited (%s) without saying to check -admin-token:\n%s", bad.proc.ExitText(), bad.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("n4 with a wrong -admin-token still runs after 20s, want it to exit because its join is refused")
	}
	want := expectedMembers(n1, n2, n3)
	for _, n := range []*node{n1, n2, n3} {
		if got := sortedMembers(mustStatus(t, n).Members); !slices.Equal(got, want) {
			t.Errorf("%s after a refused join: members %+v, want %+v", n, got, want)
		}
	}
}

// TestRemoveMember removes a follower through the other follower (which
// forwards to the leader): the remaining two list two members and keep
// accepting and replicating writes. Removing an unknown id is 404.
func TestRemoveMember(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	followers := without(nodes, leader)
	via, gone := followers[0], followers[1]

	for _, n := range []*node{via, leader} {
		res, err := adminPost(n, "/admin/remove", map[string]string{"id": "no-such-node"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusNotFound {
			t.Errorf("remove an unknown id via %s: got %s, want 404", n, res)
		}
	}
	res, err := adminPost(via, "/admin/remove", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusBadRequest {
		t.Errorf("remove without an id via %s: got %s, want 400", via, res)
	}

	res, err = adminPost(via, "/admin/remove", map[string]string{"id": gone.id})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("remove %s via follower %s: got %s, want 200", gone, via, res)
	}
	remaining := []*node{leader, via}
	waitMembers(t, 15*time.Second, remaining...)
	for _, n := range remaining {
		st := mustStatus(t, n)
		if len(st.Members) != 2 {
			t.Errorf("%s after removing %s: %d members %+v, want 2", n, gone, len(st.Members), st.Members)
		}
	}
	res, err = adminPost(leader, "/admin/remove", map[string]string{"id": gone.id})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusNotFound {
		t.Errorf("remove %s a second time: got %s, want 404", gone, res)
	}

	// The removed node is no longer a member, so it must not report ready.
	waitFor(t, 15*time.Second, fmt.Sprintf("removed %s to stop reporting ready", gone), func() (bool, string) {
		ok, why := ready(gone)
		return !ok, "/readyz " + why
	})

	var want []streamMessage
	for i := range 10 {
		n := remaining[i%2]
		body := messageBody("after-remove", i)
		idx := mustPublishTo(t, n, "/api/v1/hubs/chat", body, "")
		want = append(want, streamMessage{Index: idx, Target: "after-remove", Arguments: json.RawMessage(fmt.Sprintf("[%d]", i))})
	}
	waitServes(t, 10*time.Second, "the messages on both remaining nodes", want, remaining...)

	// The operator replaces the removed node: same id, fresh data and
	// ports. It joins, and catches up with what was published meanwhile.
	gone.stop()
	replacement := startNode(t, nodeOptions{ID: gone.id, Join: []string{via.httpAddr}})
	waitMembers(t, 30*time.Second, leader, via, replacement)
	waitServes(t, 10*time.Second, "the replacement to serve every message", want, replacement)
}

// TestRemoveLeader removes the leader through a follower: the leader leaves,
// the two others elect a new leader among themselves, list two members, and
// keep accepting writes.
func TestRemoveLeader(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	remaining := without(nodes, leader)
	res, err := adminPost(remaining[0], "/admin/remove", map[string]string{"id": leader.id})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("remove leader %s via follower %s: got %s, want 200", leader, remaining[0], res)
	}
	// Publish before checking the members: the first write also moves
	// /readyz past the new leader's no-op entry (see TestReadyAfterLeaderChange).
	var want []streamMessage
	for i := range 6 {
		n := remaining[i%2]
		idx := mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("after", i), "")
		want = append(want, streamMessage{Index: idx, Target: "after", Arguments: json.RawMessage(fmt.Sprintf("[%d]", i))})
	}
	newLeader := waitMembers(t, 20*time.Second, remaining...)
	if newLeader == leader {
		t.Fatalf("the removed node %s still leads", leader)
	}
	checkStrictlyIncreasing(t, "acknowledged", want)
	waitServes(t, 10*time.Second, "the messages on both remaining nodes", want, remaining...)
}

// TestRestartWithSameCommandLine stops a node that joined with -join and
// starts it again with the same command line and data: it ignores -join,
// stays a member (no 409), and catches up with what it missed.
func TestRestartWithSameCommandLine(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	var follower *node
	for _, n := range nodes {
		if n != leader && len(n.opts.Join) > 0 {
			follower = n
		}
	}
	var want []streamMessage
	pub := func(count int) {
		for range count {
			i := len(want)
			idx := mustPublishTo(t, leader, "/api/v1/hubs/chat", messageBody("m", i), "")
			want = append(want, streamMessage{Index: idx, Target: "m", Arguments: json.RawMessage(fmt.Sprintf("[%d]", i))})
		}
	}
	pub(10)
	follower.stop()
	pub(20)
	offset := follower.logs.Len()
	restart(t, follower)
	waitMembers(t, 20*time.Second, nodes...)
	waitServes(t, 10*time.Second, "the restarted node to serve every message", want, follower)
	if log := follower.logs.Since(offset); !strings.Contains(log, "ignoring -join") {
		t.Errorf("restarted %s: its log does not say it ignored -join (want \"existing Raft state found: ignoring -join\")", follower)
	}
}

// TestReadyAfterLeaderChange kills the leader of an idle cluster: once the
// survivors have elected a new leader and applied everything committed,
// /readyz must answer 200 on both, without any write being needed.
func TestReadyAfterLeaderChange(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	mustPublishTo(t, leader, "/api/v1/hubs/chat", messageBody("before", 1), "")
	kill9(t, leader)
	survivors := without(nodes, leader)
	waitFor(t, 15*time.Second, "a new leader among the survivors", func() (bool, string) {
		st, err := status(survivors[0])
		if err != nil {
			return false, err.Error()
		}
		return st.Leader.ID != "" && st.Leader.ID != leader.id, fmt.Sprintf("leader %q", st.Leader.ID)
	})
	waitFor(t, 10*time.Second, "/readyz 200 on both survivors with no writes", func() (bool, string) {
		for _, n := range survivors {
			if ok, why := ready(n); !ok {
				st, _ := status(n)
				return false, fmt.Sprintf("%s: /readyz %s; status commit_index %d applied_index %d last_index %d",
					n, why, st.CommitIndex, st.AppliedIndex, st.LastIndex)
			}
		}
		return true, ""
	})
}

// waitServes waits until each of nodes serves exactly want, the
// acknowledged messages, on hub chat.
func waitServes(t *testing.T, timeout time.Duration, what string, want []streamMessage, nodes ...*node) {
	t.Helper()
	waitFor(t, timeout, what, func() (bool, string) {
		for _, n := range nodes {
			got, err := readAll(n, "chat", 0)
			if err != nil {
				return false, err.Error()
			}
			if d := diffSequences(n.id, got, "acknowledged", want); d != "" {
				return false, d
			}
		}
		return true, ""
	})
}

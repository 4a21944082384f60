package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestPagesAreServedAndUnknownPathsStayJSON404(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	for _, p := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", "<title>Backplane chat</title>"},
		{"/chat", "text/html; charset=utf-8", "/ui/chat.js"},
		{"/dashboard", "text/html; charset=utf-8", "/ui/dashboard.js"},
		{"/ui/chat.js", "text/javascript; charset=utf-8", "EventSource"},
		{"/ui/style.css", "text/css; charset=utf-8", ":root"},
	} {
		res := doHTTP(t, http.MethodGet, n.url(p.path), nil, nil)
		if res.status != http.StatusOK || res.header.Get("Content-Type") != p.ctype || !contains(string(res.body), p.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", p.path, res.status, res.header.Get("Content-Type"), p.contains, contains(string(res.body), p.contains))
		}
	}
	for _, p := range []struct{ method, path string }{
		{http.MethodGet, "/nope"}, {http.MethodGet, "/ui/nope.js"}, {http.MethodPost, "/"}, {http.MethodGet, "/dashboard/x"},
	} {
		res := doHTTP(t, p.method, n.url(p.path), nil, nil)
		var body struct{ Error string }
		if res.status != http.StatusNotFound || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") ||
			json.Unmarshal(res.body, &body) != nil || body.Error == "" {
			t.Errorf("%s %s: %d %q %s, want a JSON 404", p.method, p.path, res.status, res.header.Get("Content-Type"), res.body)
		}
	}
}

func TestInfoIsPublicAndNamesTheNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3, adminToken: "admin-secret", accessKey: testAccessKey})
	leader := c.waitLeader()
	f := c.followers()[0]
	tok := signToken(t, testAccessKey, jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Audience:  jwt.ClaimStrings{leader.url("/api/v1/hubs/chat")},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	})
	idx := leader.publish(t, "chat", "message", `["a","hi"]`, map[string]string{"Authorization": "Bearer " + tok})
	waitFor(t, 5*time.Second, "the follower applies the message", func() (bool, string) {
		return f.fsm.LastMessage() == idx, ""
	})
	res := doHTTP(t, http.MethodGet, f.url("/v1/info"), nil, map[string]string{"Origin": "http://" + leader.HTTPAddr()})
	if res.status != http.StatusOK {
		t.Fatalf("GET /v1/info without credentials: %d %s", res.status, res.body)
	}
	if got, want := res.header.Get("Access-Control-Allow-Origin"), "http://"+leader.HTTPAddr(); got != want {
		t.Fatalf("GET /v1/info from a member's page: Access-Control-Allow-Origin %q, want %q (the chat page reads the leader's)", got, want)
	}
	other := doHTTP(t, http.MethodGet, f.url("/v1/info"), nil, map[string]string{"Origin": "https://elsewhere.invalid"})
	if got := other.header.Get("Access-Control-Allow-Origin"); other.status != http.StatusOK || got != "" {
		t.Fatalf("GET /v1/info from another origin: status %d, Access-Control-Allow-Origin %q, want 200 and none", other.status, got)
	}
	var info struct {
		ID          string `json:"id"`
		HTTPAddr    string `json:"http_addr"`
		Leader      string `json:"leader"`
		LastMessage uint64 `json:"last_message"`
		Members     []struct {
			ID       string `json:"id"`
			HTTPAddr string `json:"http_addr"`
		} `json:"members"`
	}
	if err := json.Unmarshal(res.body, &info); err != nil {
		t.Fatalf("decode %s: %v", res.body, err)
	}
	if info.ID != f.ID() || info.HTTPAddr != f.HTTPAddr() || info.Leader != leader.ID() || info.LastMessage != idx {
		t.Fatalf("info %+v, want id %s http_addr %s leader %s last_message %d", info, f.ID(), f.HTTPAddr(), leader.ID(), idx)
	}
	if len(info.Members) != 3 {
		t.Fatalf("members %+v, want 3", info.Members)
	}
	for _, m := range info.Members {
		if m.HTTPAddr == "" {
			t.Fatalf("member %s without http_addr: %s", m.ID, res.body)
		}
	}
	if strings.Contains(string(res.body), "raft") {
		t.Fatalf("/v1/info tells Raft addresses: %s", res.body)
	}
}

func getClusterView(t *testing.T, n *testNode, header map[string]string) ClusterView {
	t.Helper()
	res := doHTTP(t, http.MethodGet, n.url("/admin/cluster"), nil, header)
	if res.status != http.StatusOK {
		t.Fatalf("GET /admin/cluster on %s: %d %s", n.ID(), res.status, res.body)
	}
	var view ClusterView
	if err := json.Unmarshal(res.body, &view); err != nil {
		t.Fatalf("decode %s: %v", res.body, err)
	}
	return view
}

func memberByID(view ClusterView, id string) *ClusterMember {
	for i := range view.Members {
		if view.Members[i].ID == id {
			return &view.Members[i]
		}
	}
	return nil
}

func TestAdminClusterShowsEveryMemberAndMarksAStoppedOneUnreachable(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	viewer := c.nodes[0]
	waitFor(t, 10*time.Second, "every member up and ready in /admin/cluster", func() (bool, string) {
		view := getClusterView(t, viewer, nil)
		for _, m := range view.Members {
			if !m.Reachable || !m.Ready {
				return false, m.ID + ": " + m.Error + m.NotReady
			}
		}
		return len(view.Members) == 3, fmt.Sprintf("%d members", len(view.Members))
	})
	view := getClusterView(t, viewer, nil)
	if view.ID != viewer.ID() || view.Status.ID != viewer.ID() || view.Status.Leader.ID == "" {
		t.Fatalf("view of %s: id %q, status id %q, leader %q", viewer.ID(), view.ID, view.Status.ID, view.Status.Leader.ID)
	}
	for _, n := range c.nodes {
		m := memberByID(view, n.ID())
		if m == nil || m.Status == nil {
			t.Fatalf("member %s missing or without status: %+v", n.ID(), m)
		}
		if m.Self != (n == viewer) || m.Status.ID != n.ID() || m.HTTPAddr != n.HTTPAddr() || m.Error != "" {
			t.Fatalf("member %s: self %v, status id %q, http %q, error %q", n.ID(), m.Self, m.Status.ID, m.HTTPAddr, m.Error)
		}
		if _, ok := m.Status.Connections["stream_sse"]; !ok {
			t.Fatalf("member %s: connections %v lack stream_sse", n.ID(), m.Status.Connections)
		}
	}

	stopped := c.nodes[2]
	if stopped == c.leader() {
		stopped = c.nodes[1]
	}
	stopped.stop()
	start := time.Now()
	view = getClusterView(t, viewer, nil)
	if took := time.Since(start); took > 3*memberProbeTimeout {
		t.Fatalf("/admin/cluster took %s with a member down", took)
	}
	for _, n := range c.nodes {
		m := memberByID(view, n.ID())
		if m == nil {
			t.Fatalf("member %s no longer listed", n.ID())
		}
		if n == stopped {
			if m.Reachable || m.Ready || m.Status != nil || m.Error == "" {
				t.Fatalf("stopped %s: reachable %v ready %v status %v error %q", n.ID(), m.Reachable, m.Ready, m.Status != nil, m.Error)
			}
			continue
		}
		if !m.Reachable || m.Status == nil {
			t.Fatalf("running %s: reachable %v, error %q", n.ID(), m.Reachable, m.Error)
		}
	}
}

func TestAdminClusterNeedsTheAdminTokenAndUsesItBetweenNodes(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 2, adminToken: "admin-secret"})
	n := c.nodes[1]
	if res := doHTTP(t, http.MethodGet, n.url("/admin/cluster"), nil, nil); res.status != http.StatusUnauthorized {
		t.Fatalf("without token: %d %s", res.status, res.body)
	}
	if res := doHTTP(t, http.MethodGet, n.url("/admin/cluster"), nil, map[string]string{"Authorization": "Bearer wrong"}); res.status != http.StatusForbidden {
		t.Fatalf("wrong token: %d %s", res.status, res.body)
	}
	view := getClusterView(t, n, map[string]string{"Authorization": "Bearer admin-secret"})
	for _, m := range view.Members {
		if !m.Reachable || m.Status == nil || m.Status.ID != m.ID {
			t.Fatalf("member %s through the admin token: reachable %v, error %q", m.ID, m.Reachable, m.Error)
		}
	}
}

package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/fsm"
)

// A cluster whose members all know feature level 1 raises it on every
// replica; hub names with '-' are served then (and answer 404 with the
// reason before); a join that says it knows less is refused.
func TestClusterFeatureLevel(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	leader := c.waitLeader()
	waitFor(t, 10*time.Second, "every replica at feature level 1", func() (bool, string) {
		var levels []uint64
		for _, n := range c.nodes {
			levels = append(levels, n.fsm.ClusterLevel())
		}
		return slices.Equal(levels, []uint64{fsm.Level, fsm.Level, fsm.Level}), fmt.Sprint(levels)
	})
	for _, n := range c.nodes {
		idx := n.publish(t, "chat-room", "hello", `["x"]`, nil)
		if idx == 0 {
			t.Fatalf("publish to chat-room on %s: got no index", n.ID())
		}
	}
	body, _ := json.Marshal(joinRequest{ID: "old", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"})
	res := doHTTP(t, http.MethodPost, leader.url("/admin/join"), body, nil)
	if res.status != http.StatusConflict || !strings.Contains(string(res.body), "feature level") {
		t.Fatalf("join without a feature level: got %d %s, want 409 naming the feature level", res.status, res.body)
	}
}

// Before the level is raised (a member of an older version remains), a
// route naming a hub with '-' answers 404 with the reason; after, it is
// served.
func TestHubNamesWithDashWaitForTheFeatureLevel(t *testing.T) {
	f, err := fsm.New(fsm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	n := &Node{fsm: f}
	gate := n.gateHubNames(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	probe := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		gate.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, path := range []string{"/hubs/chat-room/negotiate", "/api/v1/hubs/chat-room", "/api/hubs/chat-room/:send"} {
		if code, body := probe(path); code != http.StatusNotFound || !strings.Contains(body, "feature level") {
			t.Fatalf("%s at level 0: got %d %q, want 404 naming the feature level", path, code, body)
		}
	}
	if code, _ := probe("/hubs/chat/negotiate"); code != http.StatusNoContent {
		t.Fatalf("chat at level 0: got %d, want it served", code)
	}
	f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeEntry(0, []fsm.Command{fsm.EncodeClusterLevel(1)})})
	if f.ClusterLevel() != 1 {
		t.Fatalf("after applying a raise: got level %d, want 1", f.ClusterLevel())
	}
	if code, body := probe("/hubs/chat-room/negotiate"); code != http.StatusNoContent {
		t.Fatalf("chat-room at level 1: got %d %q, want it served", code, body)
	}
}

package node

import (
	"net/http"
	"testing"
	"time"
)

// A leader that drains says it is not ready and hands leadership to
// another member while its own Raft still runs (so no election timeout is
// waited out); writes through it then reach the new leader.
func TestDrainingLeaderHandsOverLeadership(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	leader := c.waitLeader()
	leader.publish(t, "chat", "m", `["before"]`, nil)

	leader.drain()
	if res := doHTTP(t, http.MethodGet, leader.url("/readyz"), nil, nil); res.status != http.StatusServiceUnavailable || !contains(string(res.body), "draining") {
		t.Fatalf("readyz of a draining node: status %d: %s", res.status, res.body)
	}
	// Without the hand-over the old leader would keep leading: its Raft
	// runs and heartbeats, so nobody would start an election.
	waitFor(t, 5*time.Second, "another member to lead", func() (bool, string) {
		id, _ := leader.raft.Leader()
		return id != "" && id != leader.ID() && !leader.raft.IsLeader(), "leader " + id
	})
	leader.publish(t, "chat", "m", `["after"]`, nil)
}

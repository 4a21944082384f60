package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestReadinessTarget(t *testing.T) {
	now := time.Now()
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	cases := []struct {
		name    string
		samples []progressSample
		want    uint64
		wantOK  bool
	}{
		{"no sample yet", nil, 0, false},
		{"the newest answer is stale", []progressSample{{10, at(3 * time.Second)}}, 0, false},
		{"only fresh samples: the oldest", []progressSample{{10, at(200 * time.Millisecond)}, {20, at(50 * time.Millisecond)}}, 10, true},
		{"the newest at least readyLag old", []progressSample{{5, at(1500 * time.Millisecond)}, {10, at(600 * time.Millisecond)}, {30, at(100 * time.Millisecond)}}, 10, true},
	}
	for _, tc := range cases {
		var r readiness
		for _, s := range tc.samples {
			r.add(s)
		}
		got, ok := r.target(now)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: target %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
	var r readiness
	for i := range 3 * readySamples {
		r.add(progressSample{uint64(i), now})
	}
	if len(r.samples) != readySamples {
		t.Fatalf("%d samples kept, want %d", len(r.samples), readySamples)
	}
}

// A follower restarted behind the cluster says ready only once it has
// applied what the leader had committed, and until then a cursor read on
// it is told to retry (or waits) rather than answered as if complete.
func TestRestartedFollowerIsReadyOnlyWhenCaughtUp(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	leader := c.waitLeader()
	behind := c.followers()[0]
	cfg := behind.cfg
	cfg.HTTPAddr, cfg.RaftAddr = behind.HTTPAddr(), behind.RaftAddr()
	cfg.Join = nil
	behind.stop()
	for i := range 300 {
		leader.publish(t, "chat", "m", fmt.Sprintf("[%d]", i), nil)
	}
	committed := leader.raft.Status().CommitIndex
	lastMessage := leader.fsm.LastMessage()

	restarted := c.start(cfg)
	sawReady := false
	waitFor(t, 20*time.Second, "the restarted follower to be ready", func() (bool, string) {
		res := doHTTP(t, http.MethodGet, restarted.url("/readyz"), nil, nil)
		var body struct {
			Ready        bool   `json:"ready"`
			AppliedIndex uint64 `json:"applied_index"`
			Reason       string `json:"reason"`
		}
		_ = json.Unmarshal(res.body, &body)
		if res.status == http.StatusOK {
			if body.AppliedIndex < committed {
				t.Fatalf("ready at applied index %d while the leader had committed %d before the restart", body.AppliedIndex, committed)
			}
			sawReady = true
			return true, ""
		}
		return false, fmt.Sprintf("status %d: %s", res.status, res.body)
	})
	if !sawReady {
		t.Fatal("never ready")
	}
	// Once ready, a read sees everything acknowledged before the restart.
	res := doHTTP(t, http.MethodGet, restarted.url(fmt.Sprintf("/v1/hubs/chat/poll?after=%d&timeout=0", lastMessage-1)), nil, nil)
	if res.status != http.StatusOK || !contains(string(res.body), fmt.Sprintf(`"index":%d`, lastMessage)) {
		t.Fatalf("read of the last acknowledged message %d on the ready follower: status %d: %s", lastMessage, res.status, res.body)
	}
}

// A follower that cannot hear the leader's answer is not ready, and says
// why; the leader answers members only.
func TestProgressIsForMembersAndLeadersOnly(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	leader := c.waitLeader()
	follower := c.followers()[0]
	if res := doHTTP(t, http.MethodGet, follower.url(progressPath), nil, nil); res.status != http.StatusMisdirectedRequest && res.status != http.StatusForbidden {
		t.Fatalf("progress asked of a follower: status %d: %s", res.status, res.body)
	}
	res := doHTTP(t, http.MethodGet, leader.url(progressPath), nil, nil)
	if res.status != http.StatusOK {
		t.Fatalf("progress asked of the leader from loopback: status %d: %s", res.status, res.body)
	}
	var p progressAnswer
	if err := json.Unmarshal(res.body, &p); err != nil || p.Leader != leader.ID() || p.CommitIndex == 0 {
		t.Fatalf("progress answer %s: %+v %v", res.body, p, err)
	}
}

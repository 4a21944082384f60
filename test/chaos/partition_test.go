package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// testPartitions runs the cluster in network namespaces (netns_test.go)
// and, round after round, cuts the leader off (it must step down and
// acknowledge nothing; the others elect a leader and go on), heals it,
// cuts a follower off (the others go on), and heals it. Readers on a cut
// node resume elsewhere; publishes to it are retried elsewhere.
func testPartitions(t *testing.T, p plan) {
	c := newCluster(t, 3, clusterOptions{netns: true, extra: compaction})
	r := startLoad(c, "chaos", p.rate, p.pad)
	var stepDowns, elections, leaderPauses, followerPauses, healed []time.Duration
	leaderChanges := 0
	var orphans []string // payloads sent to an isolated leader
	for round := range p.partitions {
		r.waitAcks(p.rate/2, 30*time.Second, fmt.Sprintf("round %d: before cutting the leader", round+1))
		leader := c.leader(20 * time.Second)
		oldLeader := leader
		t0 := time.Now()
		c.lab.cut(leader)
		var stepDown time.Duration
		testkit.WaitFor(t, 15*time.Second, "the isolated leader "+leader.id+" to step down", func() (bool, string) {
			st, err := status(leader)
			if err != nil {
				return false, err.Error()
			}
			stepDown = time.Since(t0)
			return st.State != "Leader", st.State
		})
		stepDowns = append(stepDowns, stepDown)
		_, took := c.waitNewLeader(c.followers(leader), leader, t0, 20*time.Second)
		elections = append(elections, took)

		// The isolated node acknowledges nothing: a publish sent to it from
		// inside its namespace fails (503 after -write-timeout).
		orphan := fmt.Sprintf("isolated-%d", round+1)
		orphans = append(orphans, orphan)
		body, _ := json.Marshal(map[string]any{"target": "chaos", "arguments": []string{orphan, "x"}})
		code, _, resp, err := get(leader.ctl, http.MethodPost, leader.url("/api/v1/hubs/"+r.hub), body, http.Header{"Idempotency-Key": {orphan}})
		if err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("publish to the isolated old leader %s: %d %s %v, want 503 (it cannot commit)", leader, code, bytes.TrimSpace(resp), err)
		}
		r.pub.mu.Lock()
		r.pub.sent[orphan] = true // so the checker knows it; absence is checked below
		r.pub.mu.Unlock()

		r.waitAcks(p.rate/2, 30*time.Second, "with the leader "+leader.id+" cut off")
		r.runFor(p.downFor, "with the leader "+leader.id+" cut off")
		c.lab.heal(leader)
		h0 := time.Now()
		c.waitHealthy(60 * time.Second)
		healed = append(healed, time.Since(h0))
		pause, began := r.pub.longestPause(t0, time.Now())
		leaderPauses = append(leaderPauses, pause)
		t.Logf("round %d: leader %s cut off: stepped down after %s, new leader after %s; healed after %s, all ready %s later; longest pause in acknowledgements %s from +%s",
			round+1, leader, stepDown.Round(10*time.Millisecond), took.Round(10*time.Millisecond), h0.Sub(t0).Round(10*time.Millisecond),
			healed[len(healed)-1].Round(10*time.Millisecond), pause.Round(10*time.Millisecond), began.Sub(t0).Round(10*time.Millisecond))
		r.runFor(p.between, "after healing the leader")

		r.waitAcks(p.rate/2, 30*time.Second, fmt.Sprintf("round %d: before cutting a follower", round+1))
		leader = c.leader(20 * time.Second)
		before, err := status(leader)
		if err != nil {
			t.Fatal(err)
		}
		// A follower other than the old leader, so its reader moves too.
		f := c.followers(leader)[0]
		if f == oldLeader {
			f = c.followers(leader)[1]
		}
		t1 := time.Now()
		c.lab.cut(f)
		r.waitAcks(p.rate, 30*time.Second, "with the follower "+f.id+" cut off")
		r.runFor(p.downFor, "with the follower "+f.id+" cut off")
		c.lab.heal(f)
		h1 := time.Now()
		after := c.waitHealthy(60 * time.Second)
		healed = append(healed, time.Since(h1))
		pause, began = r.pub.longestPause(t1, time.Now())
		followerPauses = append(followerPauses, pause)
		t.Logf("round %d: follower %s cut off for %s; all ready %s after the heal; longest pause in acknowledgements %s from +%s",
			round+1, f, h1.Sub(t1).Round(10*time.Millisecond), healed[len(healed)-1].Round(10*time.Millisecond),
			pause.Round(10*time.Millisecond), began.Sub(t1).Round(10*time.Millisecond))
		if st, err := status(after); err != nil || after != leader || st.Term != before.Term {
			leaderChanges++
			t.Logf("cutting off and healing the follower %s moved leadership from %s (term %d) to %s (term %d)", f, leader, before.Term, after, st.Term)
		}
		r.runFor(p.between, "after healing the follower")
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the last partition")
	r.finish()
	for _, n := range c.nodes {
		msgs, err := readLog(n, r.hub)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			for _, o := range orphans {
				if m.id == o {
					t.Errorf("%s holds %s at index %d, which only an isolated leader had appended", n, o, m.Index)
				}
			}
		}
	}
	r.figures(fmt.Sprintf("%d rounds; isolated leader stepped down after %s; new leader after %s; longest pause in acknowledgements: leader cut %s, follower cut %s; ready after heal %s; leader changes caused by a follower's cut %d",
		p.partitions, spread(stepDowns), spread(elections), spread(leaderPauses), spread(followerPauses), spread(healed), leaderChanges))
}

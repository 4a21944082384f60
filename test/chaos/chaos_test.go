package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// plan is how much chaos a run makes.
type plan struct {
	name       string
	rate       int // publishes a second
	pad        int // bytes of padding per payload
	killCycles int // kill -9 cycles; killsLeader says which hit the leader
	crashes    int // whole-cluster kill -9 and restart
	partitions int // rounds of: cut the leader, heal, cut a follower, heal
	churns     int // remove a follower, wipe it, join it again
	diskFull   time.Duration
	diskPad    int           // padding while a disk is filled: all the log and snapshots written meanwhile must fit the 20 MB tmpfs once freed
	downFor    time.Duration // how long a killed or cut node stays away, at least
	between    time.Duration // steady load between two faults, at least
}

// currentPlan is the short plan, or the long one with BACKPLANE_CHAOS=long.
func currentPlan(t *testing.T) plan {
	switch v := os.Getenv("BACKPLANE_CHAOS"); v {
	case "", "short":
		return plan{name: "short", rate: 100, pad: 200, killCycles: 3, crashes: 1, partitions: 1, churns: 1,
			diskFull: 3 * time.Second, diskPad: 1500}
	case "long":
		return plan{name: "long", rate: 200, pad: 500, killCycles: 30, crashes: 5, partitions: 5, churns: 5,
			diskFull: 60 * time.Second, diskPad: 300, downFor: 5 * time.Second, between: 5 * time.Second}
	default:
		t.Fatalf("BACKPLANE_CHAOS=%q: want short (the default) or long", v)
		return plan{}
	}
}

// killsLeader: two of every three kill cycles hit the leader (20 of 30 in
// the long plan), the others a follower.
func (p plan) killsLeader(cycle int) bool { return cycle%3 != 1 }

// compaction makes snapshots frequent, so restarted and re-joined nodes
// also catch up from a snapshot, not only from the log.
var compaction = []string{"-snapshot-threshold", "512", "-trailing-logs", "256", "-snapshot-interval", "1s"}

// TestChaos runs every scenario in turn, each on a fresh three-node
// cluster under a paced publisher and a resuming reader per node, and ends
// each with the full check (checker_test.go).
func TestChaos(t *testing.T) {
	p := currentPlan(t)
	t.Logf("chaos plan %q: %+v", p.name, p)
	t.Run("KillLoop", func(t *testing.T) { testKillLoop(t, p) })
	t.Run("WholeClusterCrash", func(t *testing.T) { testWholeClusterCrash(t, p) })
	t.Run("Partitions", func(t *testing.T) { testPartitions(t, p) })
	t.Run("MembershipChurn", func(t *testing.T) { testMembershipChurn(t, p) })
	t.Run("FullDisk", func(t *testing.T) { testFullDisk(t, p) })
	t.Run("DamagedFiles", func(t *testing.T) { testDamagedFiles(t, p) })
}

// testKillLoop kills a node with SIGKILL, the leader or a follower, waits
// until writes go on without it, restarts it and waits until it is caught
// up, cycle after cycle.
func testKillLoop(t *testing.T, p plan) {
	c := newCluster(t, 3, clusterOptions{extra: compaction})
	r := startLoad(c, "chaos", p.rate, p.pad)
	r.waitAcks(p.rate, 30*time.Second, "before the first kill")
	var elections, pauses, catchUps []time.Duration
	leaderKills := 0
	for cycle := range p.killCycles {
		leader := c.leader(20 * time.Second)
		victim := leader
		if !p.killsLeader(cycle) {
			victim = c.followers(leader)[cycle%2]
		} else {
			leaderKills++
		}
		t0 := time.Now()
		victim.kill9()
		elected := ""
		if victim == leader {
			l, took := c.waitNewLeader(c.followers(victim), victim, t0, 20*time.Second)
			elections = append(elections, took)
			elected = fmt.Sprintf("; %s elected after %s", l, took.Round(10*time.Millisecond))
		}
		r.waitAcks(p.rate/2, 30*time.Second, fmt.Sprintf("cycle %d: with %s killed", cycle+1, victim))
		r.runFor(p.downFor, fmt.Sprintf("cycle %d: with %s killed", cycle+1, victim))
		catchUps = append(catchUps, c.startUntilHealthy(victim))
		pause, began := r.pub.longestPause(t0, time.Now())
		pauses = append(pauses, pause)
		t.Logf("cycle %d: kill -9 %s (leader: %v)%s; restarted, all ready after %s; longest pause in acknowledgements %s from +%s",
			cycle+1, victim, victim == leader, elected, catchUps[len(catchUps)-1].Round(10*time.Millisecond),
			pause.Round(10*time.Millisecond), began.Sub(t0).Round(10*time.Millisecond))
		r.runFor(p.between, "between cycles")
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the last cycle")
	r.finish()
	r.figures(fmt.Sprintf("%d kill -9 cycles (%d of the leader); new leader after %s; longest pause in acknowledgements per cycle %s; restarted node ready after %s",
		p.killCycles, leaderKills, spread(elections), spread(pauses), spread(catchUps)))
}

// testWholeClusterCrash kills every node with SIGKILL at once and restarts
// them all.
func testWholeClusterCrash(t *testing.T, p plan) {
	c := newCluster(t, 3, clusterOptions{extra: compaction})
	r := startLoad(c, "chaos", p.rate, p.pad)
	var recoveries []time.Duration
	for crash := range p.crashes {
		r.waitAcks(p.rate, 30*time.Second, fmt.Sprintf("before crash %d", crash+1))
		for _, n := range c.nodes {
			n.kill9()
		}
		// Down until a second of publishes (more in the long plan) waits
		// for the cluster.
		want := int64(p.rate) * max(1, int64(p.downFor/time.Second))
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%d payloads pending while the cluster is down", want), func() (bool, string) {
			n := r.pub.inFlight.Load()
			return n >= want, fmt.Sprintf("%d pending", n)
		})
		t0 := time.Now()
		for _, n := range c.nodes {
			n.start()
		}
		c.waitHealthy(60 * time.Second)
		r.waitAcks(1, 30*time.Second, fmt.Sprintf("after crash %d", crash+1))
		recoveries = append(recoveries, time.Since(t0))
		t.Logf("crash %d: %d payloads pending; first acknowledgement %s after the restart", crash+1, want, recoveries[len(recoveries)-1].Round(10*time.Millisecond))
		r.runFor(p.between, "between crashes")
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the last crash")
	r.finish()
	r.figures(fmt.Sprintf("%d whole-cluster crashes; from restart to the first acknowledgement %s", p.crashes, spread(recoveries)))
}

// testMembershipChurn removes a follower with POST /admin/remove, stops
// it, wipes its data directory and starts it with -join (which asks the
// cluster through POST /admin/join): it must come back as a member and
// catch up, and nothing acknowledged meanwhile may be lost.
func testMembershipChurn(t *testing.T, p plan) {
	c := newCluster(t, 3, clusterOptions{extra: compaction})
	r := startLoad(c, "chaos", p.rate, p.pad)
	var catchUps []time.Duration
	for round := range p.churns {
		r.waitAcks(p.rate/2, 30*time.Second, fmt.Sprintf("before churn %d", round+1))
		leader := c.leader(20 * time.Second)
		victim := c.followers(leader)[round%2]
		body, _ := json.Marshal(map[string]string{"id": victim.id})
		code, _, resp, err := get(clientHTTP, http.MethodPost, leader.url("/admin/remove"), body, adminHeader())
		if err != nil || code != http.StatusOK {
			t.Fatalf("POST %s/admin/remove %s: %d %s %v, want 200", leader, body, code, resp, err)
		}
		victim.stop()
		rest := c.followers(victim)
		want := []string{rest[0].id, rest[1].id}
		slices.Sort(want)
		waitMembersOf(t, c, rest, want)
		r.waitAcks(p.rate/2, 30*time.Second, fmt.Sprintf("with %s removed", victim))
		r.runFor(p.downFor, fmt.Sprintf("with %s removed", victim))
		victim.wipe(httpAddrs(rest))
		catchUps = append(catchUps, c.startUntilHealthy(victim))
		t.Logf("churn %d: removed %s, wiped it, re-joined: all ready %s after its start", round+1, victim, catchUps[len(catchUps)-1].Round(10*time.Millisecond))
		r.runFor(p.between, "between churns")
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the last churn")
	r.finish()
	r.figures(fmt.Sprintf("%d removals and re-joins of a wiped follower; re-joined node ready after %s", p.churns, spread(catchUps)))
}

// waitMembersOf waits until every node of among lists exactly members and
// they agree on a leader.
func waitMembersOf(t *testing.T, c *cluster, among []*node, members []string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%s to list members %v and agree on a leader", names(among), members), func() (bool, string) {
		l, why := c.agreedLeader(among, members)
		return l != nil, why
	})
}

// spread is "min–max (n)" of some durations.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	lo, hi := slices.Min(ds), slices.Max(ds)
	return fmt.Sprintf("%s–%s (%d)", lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond), len(ds))
}

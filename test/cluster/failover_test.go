package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publisher sends unique payloads with Idempotency-Keys to a set of nodes.
// On an error or a non-202 answer it retries the same payload and key on the
// next node until it is acknowledged or the retry deadline passes.
type publisher struct {
	nodes []*node
	hub   string
	retry time.Duration

	mu     sync.Mutex
	acked  map[string]streamMessage // payload id -> acknowledged message
	failed []string                 // payloads never acknowledged
	errs   []string                 // protocol violations
	count  atomic.Int64
}

func newPublisher(nodes []*node, hub string) *publisher {
	return &publisher{nodes: nodes, hub: hub, retry: 25 * time.Second, acked: map[string]streamMessage{}}
}

// publishOne sends payload id until acknowledged; start picks the first node.
func (p *publisher) publishOne(id string, start int) {
	target := "t-" + strings.SplitN(id, "-", 2)[0]
	body := messageBody(target, id)
	args, _ := json.Marshal([]any{id})
	deadline := time.Now().Add(p.retry)
	var last string
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		n := p.nodes[(start+attempt)%len(p.nodes)]
		pr, err := publish(n, p.hub, body, "idem-"+id)
		switch {
		case err != nil && pr.Status == http.StatusAccepted:
			p.mu.Lock()
			p.errs = append(p.errs, err.Error())
			p.mu.Unlock()
			return
		case err != nil:
			last = fmt.Sprintf("via %s: %v", n, err)
		case pr.Status == http.StatusAccepted:
			p.mu.Lock()
			p.acked[id] = streamMessage{Index: pr.Index, Target: target, Arguments: args}
			p.mu.Unlock()
			p.count.Add(1)
			return
		case pr.Status == http.StatusServiceUnavailable || pr.Status == http.StatusBadGateway || pr.Status == http.StatusGatewayTimeout:
			last = fmt.Sprintf("via %s: %d %s", n, pr.Status, pr.Body)
		default:
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Sprintf("%s via %s: got %d %s, want 202 or a retryable 503", id, n, pr.Status, pr.Body))
			p.mu.Unlock()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	p.failed = append(p.failed, fmt.Sprintf("%s (last: %s)", id, last))
	p.mu.Unlock()
}

// start starts workers goroutines that publish until the returned stop
// is called; stop waits for them, may be called more than once, and runs
// at the test's cleanup in any case.
func (p *publisher) start(t *testing.T, workers int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				p.publishOne(fmt.Sprintf("w%d-%d", w, i), w+i)
			}
		})
	}
	stop = sync.OnceFunc(func() { close(done); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// reportFailures fails the test for every publish that got an unexpected
// answer or was never acknowledged; call it once the publishers stopped.
func (p *publisher) reportFailures(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		t.Error(e)
	}
	for _, f := range p.failed {
		t.Errorf("never acknowledged within %s of retries: %s", p.retry, f)
	}
}

// check compares a node's sequence with the acknowledged messages: each
// acknowledged payload exactly once at its index, nothing unknown, indexes
// dense from 1.
func (p *publisher) check(t *testing.T, name string, msgs []streamMessage) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	checkDense(t, name, msgs, 1)
	seen := map[string]int{}
	for _, m := range msgs {
		var args []string
		if err := json.Unmarshal(m.Arguments, &args); err != nil || len(args) != 1 {
			t.Errorf("%s: message %v is not one of the publishers'", name, m)
			continue
		}
		id := args[0]
		seen[id]++
		if want, ok := p.acked[id]; ok && !m.same(want) {
			t.Errorf("%s: payload %s is %v, want %v (its acknowledged index)", name, id, m, want)
		}
		if seen[id] == 2 {
			t.Errorf("%s: payload %s appears more than once (second at %d)", name, id, m.Index)
		}
	}
	for id, want := range p.acked {
		if seen[id] == 0 {
			t.Errorf("%s: acknowledged payload %s (index %d) is missing", name, id, want.Index)
		}
	}
}

// TestLeaderKillFailover kills the leader with SIGKILL while publishers
// run. Every acknowledged message must be on both survivors exactly once at
// its acknowledged index, the survivors must agree, and the killed node,
// restarted after the others compacted their logs, must catch up (from a
// snapshot) to the same sequence.
func TestLeaderKillFailover(t *testing.T) {
	opts := nodeOptions{SnapshotThreshold: 64, TrailingLogs: 16, SnapshotInterval: time.Second, WriteTimeout: 3 * time.Second}
	nodes := startCluster(t, 3, opts)
	const hub = "orders"
	leader := waitMembers(t, 10*time.Second, nodes...)

	pub := newPublisher(nodes, hub)
	stopPublishers := pub.start(t, 4)
	waitFor(t, 20*time.Second, "150 acknowledged publishes before the kill", func() (bool, string) {
		n := pub.count.Load()
		return n >= 150, fmt.Sprintf("%d acknowledged", n)
	})
	kill9(t, leader)
	killedAt := pub.count.Load()
	t.Logf("killed leader %s after %d acknowledged publishes", leader, killedAt)

	survivors := without(nodes, leader)
	newLeader := waitLeaderAmong(t, 20*time.Second, "the survivors to elect a new leader", survivors)
	waitFor(t, 30*time.Second, "150 more acknowledged publishes after the failover", func() (bool, string) {
		n := pub.count.Load()
		return n >= killedAt+150, fmt.Sprintf("%d acknowledged, %d at the kill", n, killedAt)
	})
	stopPublishers()
	pub.reportFailures(t)
	t.Logf("new leader %s; %d publishes acknowledged", newLeader, len(pub.acked))

	var maxAcked uint64
	for _, m := range pub.acked {
		maxAcked = max(maxAcked, m.Index)
	}
	seqs := map[*node][]streamMessage{}
	waitFor(t, 15*time.Second, "both survivors to serve every acknowledged message", func() (bool, string) {
		for _, n := range survivors {
			msgs, err := readAll(n, hub, 0)
			if err != nil {
				return false, err.Error()
			}
			if len(msgs) == 0 || msgs[len(msgs)-1].Index < maxAcked {
				return false, fmt.Sprintf("%s serves %d messages, the highest acknowledged index is %d", n, len(msgs), maxAcked)
			}
			seqs[n] = msgs
		}
		return true, ""
	})
	a, b := survivors[0], survivors[1]
	if d := diffSequences(a.id, seqs[a], b.id, seqs[b]); d != "" {
		t.Errorf("the survivors serve different sequences: %s", d)
	}
	for _, n := range survivors {
		pub.check(t, n.id, seqs[n])
	}
	if t.Failed() {
		return
	}

	// More entries than -trailing-logs, then compaction on the survivors:
	// the log the killed node lacks is gone, so it needs a snapshot.
	for i := range 100 {
		pub.publishOne(fmt.Sprintf("after-%d", i), i)
	}
	if len(pub.failed) > 0 || len(pub.errs) > 0 {
		t.Fatalf("publishing after the failover: failed %v, errors %v", pub.failed, pub.errs)
	}
	for _, n := range survivors {
		snapshot(t, n)
	}
	var want []streamMessage
	waitFor(t, 15*time.Second, "the survivors to agree after the extra publishes", func() (bool, string) {
		ma, err := readAll(a, hub, 0)
		if err != nil {
			return false, err.Error()
		}
		mb, err := readAll(b, hub, 0)
		if err != nil {
			return false, err.Error()
		}
		if d := diffSequences(a.id, ma, b.id, mb); d != "" {
			return false, d
		}
		want = ma
		return true, ""
	})
	pub.check(t, "survivors after compaction", want)

	logOffset := leader.logs.Len()
	restart(t, leader)
	waitFor(t, 30*time.Second, fmt.Sprintf("restarted %s to serve the survivors' %d messages", leader, len(want)), func() (bool, string) {
		got, err := readAll(leader, hub, 0)
		if err != nil {
			return false, err.Error()
		}
		if d := diffSequences(leader.id, got, "survivors", want); d != "" {
			return false, d
		}
		return true, ""
	})
	waitMembers(t, 15*time.Second, nodes...)
	// The restarted node's state came from a snapshot: it must keep
	// deduplicating (every node decides duplicates when it applies), and
	// new writes must land identically on all three.
	retried := 0
	for id, m := range pub.acked {
		if retried == 20 {
			break
		}
		via := nodes[retried%len(nodes)]
		pr, err := publish(via, hub, messageBody(m.Target, id), "idem-"+id)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Status != http.StatusAccepted || pr.Index != m.Index || !pr.Duplicate {
			t.Errorf("retry of acknowledged %s via %s after the restart: got %d index %d duplicate %v (%s), want 202 index %d duplicate true",
				id, via, pr.Status, pr.Index, pr.Duplicate, pr.Body, m.Index)
		}
		retried++
	}
	for i := range 10 {
		pub.publishOne(fmt.Sprintf("final-%d", i), i)
	}
	if len(pub.failed) > 0 || len(pub.errs) > 0 {
		t.Fatalf("publishing after the restart: failed %v, errors %v", pub.failed, pub.errs)
	}
	waitFor(t, 15*time.Second, "all three nodes to serve the same sequence after the restart", func() (bool, string) {
		ref, same, why := sameSequence(nodes, hub)
		want = ref
		return same, why
	})
	pub.check(t, "all nodes after the restart", want)

	restartLog := leader.logs.Since(logOffset)
	if !strings.Contains(restartLog, "Installed remote snapshot") || !strings.Contains(restartLog, "restored state from snapshot") {
		t.Errorf("restarted %s caught up without installing the leader's snapshot (want \"Installed remote snapshot\" and \"restored state from snapshot\" in its log, since the log it lacked was compacted)", leader)
	}
}

// snapshot forces a Raft snapshot and log compaction on n. "Nothing new to
// snapshot" is fine: an automatic snapshot may have just run.
func snapshot(t *testing.T, n *node) {
	t.Helper()
	res, err := adminPost(n, "/admin/snapshot", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK && !strings.Contains(string(res.Body), "nothing new to snapshot") {
		t.Fatalf("POST /admin/snapshot on %s: got %s, want 200", n, res)
	}
}

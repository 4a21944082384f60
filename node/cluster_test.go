package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

func TestPublishThroughFollowerIsForwardedAndReplicated(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	follower := c.followers()[0]
	idx := follower.publish(t, "chat", "say", `["hello",{"n":1}]`, nil)

	for _, n := range c.nodes {
		waitFor(t, 5*time.Second, n.ID()+" applies the message", func() (bool, string) {
			page, err := n.fsm.Read(&fsm.Filter{Hub: "chat", Broadcast: true}, 0, 10)
			if err != nil {
				return false, err.Error()
			}
			if len(page.Messages) != 1 {
				return false, fmt.Sprintf("%d messages", len(page.Messages))
			}
			m := page.Messages[0]
			if m.Index != idx || m.Target != "say" || string(m.Arguments) != `["hello",{"n":1}]` {
				return false, fmt.Sprintf("got %d %s %s, want %d say [\"hello\",{\"n\":1}]", m.Index, m.Target, m.Arguments, idx)
			}
			return true, ""
		})
	}
}

func TestConcurrentPublishesFromAllNodesGetDenseUniqueIndexes(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	const total = 240
	var mu sync.Mutex
	seen := map[uint64]string{}
	var wg sync.WaitGroup
	for w := 0; w < 24; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := c.nodes[w%len(c.nodes)]
			for i := 0; i < total/24; i++ {
				payload := fmt.Sprintf(`["w%d-%d"]`, w, i)
				idx := n.publish(t, "load", "m", payload, nil)
				mu.Lock()
				if prev, dup := seen[idx]; dup {
					t.Errorf("index %d given to %s and %s", idx, prev, payload)
				}
				seen[idx] = payload
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	for i := uint64(1); i <= total; i++ {
		if _, ok := seen[i]; !ok {
			t.Fatalf("index %d was never acknowledged: indexes are not dense (%d acknowledged)", i, len(seen))
		}
	}
	for _, n := range c.nodes {
		waitFor(t, 5*time.Second, n.ID()+" has every message", func() (bool, string) {
			return n.fsm.LastMessage() == total, fmt.Sprintf("last message %d", n.fsm.LastMessage())
		})
		page, err := n.fsm.Read(&fsm.Filter{Hub: "load", Broadcast: true}, 0, total+10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if seen[m.Index] != string(m.Arguments) {
				t.Fatalf("%s: index %d holds %s, the publisher was told %s", n.ID(), m.Index, m.Arguments, seen[m.Index])
			}
		}
	}
}

// newLeaderWithoutRun is a one-member node that leads, made with New but
// not Run: its proposer's run loop is not started, so a test decides when
// queued proposals leave.
func newLeaderWithoutRun(t *testing.T) *Node {
	t.Helper()
	cfg := Config{ID: "solo", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", Logger: testLogger(t)}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	waitFor(t, 10*time.Second, "leadership", func() (bool, string) { return n.raft.IsLeader(), "not leader" })
	return n
}

// Proposals that wait while the proposer is busy leave together in one
// Raft entry (application-level group commit).
func TestQueuedProposalsShareOneRaftEntry(t *testing.T) {
	n := newLeaderWithoutRun(t)
	// Let the no-op of the new term be applied, so the entry count is exact.
	waitFor(t, 5*time.Second, "applied", func() (bool, string) {
		st := n.raft.Status()
		return st.AppliedIndex == st.LastIndex, fmt.Sprintf("%+v", st)
	})
	before := n.raft.Status().LastIndex

	// Every apply slot is taken, as when as many entries are in flight:
	// proposals cannot go alone and must queue.
	for range applySlots {
		n.proposer.slots <- struct{}{}
	}
	const proposals = 100
	results := make(chan fsm.Result, proposals)
	for i := 0; i < proposals; i++ {
		go func(i int) {
			p := &fsm.Publish{Hub: "h", Audience: fsm.ToAll, Target: "t", Arguments: []byte(fmt.Sprintf("[%d]", i))}
			res, err := n.proposer.Propose(t.Context(), []fsm.Command{fsm.EncodePublish(p)})
			if err != nil {
				t.Errorf("propose: %v", err)
				results <- fsm.Result{}
				return
			}
			results <- res[0]
		}(i)
	}
	waitFor(t, 5*time.Second, "all proposals queued", func() (bool, string) {
		return len(n.proposer.in) == proposals, fmt.Sprintf("%d queued", len(n.proposer.in))
	})
	for range applySlots {
		<-n.proposer.slots
	}
	go n.proposer.run()
	got := map[uint64]bool{}
	for i := 0; i < proposals; i++ {
		r := <-results
		got[r.Index] = true
	}
	for i := uint64(1); i <= proposals; i++ {
		if !got[i] {
			t.Fatalf("index %d missing from the results", i)
		}
	}
	if entries := n.raft.Status().LastIndex - before; entries != 1 {
		t.Fatalf("%d proposals used %d Raft entries, want 1", proposals, entries)
	}
}

// A proposal that finds the queue empty and a slot free is committed on
// its caller's goroutine: it needs no run loop (none runs here) and
// leaves the slot free again; with every slot taken it queues instead.
func TestLoneProposalSkipsTheQueue(t *testing.T) {
	n := newLeaderWithoutRun(t)
	publish := func(arg string) []fsm.Command {
		return []fsm.Command{fsm.EncodePublish(&fsm.Publish{Hub: "h", Audience: fsm.ToAll, Target: "t", Arguments: []byte(arg)})}
	}
	for i := 1; i <= 3; i++ {
		res, err := n.proposer.Propose(t.Context(), publish(fmt.Sprintf("[%d]", i)))
		if err != nil || res[0].Err != nil || res[0].Index != uint64(i) {
			t.Fatalf("proposal %d without a run loop: %+v, %v", i, res, err)
		}
	}
	if busy := len(n.proposer.slots); busy != 0 {
		t.Fatalf("%d slots still taken after the proposals were answered", busy)
	}

	for range applySlots {
		n.proposer.slots <- struct{}{}
	}
	answered := make(chan error, 1)
	go func() {
		_, err := n.proposer.Propose(t.Context(), publish("[4]"))
		answered <- err
	}()
	waitFor(t, 5*time.Second, "the proposal queued", func() (bool, string) {
		return len(n.proposer.in) == 1, fmt.Sprintf("%d queued", len(n.proposer.in))
	})
	for range applySlots {
		<-n.proposer.slots
	}
	go n.proposer.run()
	if err := <-answered; err != nil {
		t.Fatalf("queued proposal: %v", err)
	}
	if last := n.fsm.LastMessage(); last != 4 {
		t.Fatalf("last message %d, want 4", last)
	}
}

func TestIdempotencyKeyReturnsOriginalIndexOnAnyNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	key := map[string]string{IdempotencyKeyHeader: "order-42"}
	first := c.nodes[1].publish(t, "chat", "say", `["once"]`, key)
	res := doHTTP(t, http.MethodPost, c.nodes[2].url("/api/v1/hubs/chat"), []byte(`{"target":"say","arguments":["once"]}`), key)
	if res.status != http.StatusAccepted {
		t.Fatalf("retry: status %d: %s", res.status, res.body)
	}
	var out struct{ Index uint64 }
	_ = json.Unmarshal(res.body, &out)
	if out.Index != first || res.header.Get("Backplane-Duplicate") != "true" {
		t.Fatalf("retry got index %d duplicate=%q, want %d duplicate=true", out.Index, res.header.Get("Backplane-Duplicate"), first)
	}
	// The same key on another hub is another key.
	other := c.nodes[0].publish(t, "news", "say", `["once"]`, key)
	if other == first {
		t.Fatalf("a key on another hub returned the first hub's index %d", first)
	}
	if last := c.leader().fsm.LastMessage(); last != 2 {
		t.Fatalf("last message %d, want 2 (the retry must not append)", last)
	}
}

func TestWritesAnswer503WithRetryAfterWithoutQuorum(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3, tweak: func(cfg *Config) { cfg.WriteTimeout = time.Second }})
	leader := c.leader()
	for _, f := range c.followers() {
		f.stop()
	}
	start := time.Now()
	res := doHTTP(t, http.MethodPost, leader.url("/api/v1/hubs/chat"), []byte(`{"target":"t","arguments":[]}`), nil)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", res.status, res.body)
	}
	if res.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the write waited %s: it must be bounded by the write timeout", took)
	}
	// A node without a leader cannot know it has everything (issue 12:
	// readiness means caught up): a read is told to retry elsewhere rather
	// than answered as if the log ended here.
	poll := doHTTP(t, http.MethodGet, leader.url("/v1/hubs/chat/poll?after=0&timeout=0"), nil, nil)
	if poll.status != http.StatusServiceUnavailable || poll.header.Get("Retry-After") == "" || !contains(string(poll.body), "read from another node") {
		t.Fatalf("poll without quorum: status %d (Retry-After %q): %s", poll.status, poll.header.Get("Retry-After"), poll.body)
	}
}

func TestLongPollWakesOnCommitOnAnotherNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	follower := c.followers()[0]
	got := make(chan httpResult, 1)
	go func() {
		got <- doHTTP(t, http.MethodGet, follower.url("/v1/hubs/chat/poll?after=0&timeout=20&group=room1"), nil, nil)
	}()
	// Messages for another group must not end the poll.
	c.leader().publishTo(t, "chat", "groups/room2", "skip")
	idx := c.leader().publishTo(t, "chat", "groups/room1", "wake")
	select {
	case res := <-got:
		var body struct {
			Messages []fsm.Message
			Next     uint64
		}
		if err := json.Unmarshal(res.body, &body); err != nil {
			t.Fatalf("poll body %s: %v", res.body, err)
		}
		if len(body.Messages) != 1 || body.Messages[0].Index != idx || body.Messages[0].Target != "wake" || body.Next != idx {
			t.Fatalf("poll answered %s, want only message %d (wake) and next %d", res.body, idx, idx)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long poll did not return after a matching commit")
	}
}

// publishTo posts a message to a REST sub-path of the hub (e.g. groups/g1).
func (n *testNode) publishTo(t *testing.T, hub, sub, target string) uint64 {
	t.Helper()
	res := doHTTP(t, http.MethodPost, n.url("/api/v1/hubs/"+hub+"/"+sub), []byte(fmt.Sprintf(`{"target":%q,"arguments":[]}`, target)), nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("publish to %s: status %d: %s", sub, res.status, res.body)
	}
	var out struct{ Index uint64 }
	_ = json.Unmarshal(res.body, &out)
	return out.Index
}

// The leader expires the connections of a node it cannot reach, once, for
// the whole cluster.
func TestLeaderExpiresConnectionsOfAnUnreachableNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3, tweak: func(cfg *Config) { cfg.HolderTimeout = 1500 * time.Millisecond }})
	victim := c.followers()[0]
	open := fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: "held-by-victim", NodeID: victim.ID()})
	if _, err := c.leader().proposer.Propose(t.Context(), []fsm.Command{open}); err != nil {
		t.Fatal(err)
	}
	leader := c.leader()
	if _, ok, _ := leader.fsm.Connection("chat", "held-by-victim"); !ok {
		t.Fatal("the connection was not recorded")
	}
	victim.stop()
	waitFor(t, 20*time.Second, "the connection of the stopped node to expire", func() (bool, string) {
		_, ok, err := leader.fsm.Connection("chat", "held-by-victim")
		return err == nil && !ok, "still recorded"
	})
}

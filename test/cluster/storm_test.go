package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// stormReader follows a hub over SSE from the start of the log, as a
// client does: when its stream ends it reconnects with after=<the last
// index it received>, on a surviving node once its own is dead. Its
// fields belong to its goroutine until it stops, except last.
type stormReader struct {
	id      int
	home    *node // the node it reads from first
	at      *node // the node it reads from now
	msgs    []streamMessage
	last    atomic.Uint64 // the index of the last message received
	resumes int           // streams it opened on a survivor after home died
	errs    []string      // what the streams did wrong
}

// run reads until ctx ends. Once dead is set, a stream on it that ends
// makes the reader move to the next of survivors (round-robin by id).
func (r *stormReader) run(ctx context.Context, hub string, dead *atomic.Pointer[node], survivors []*node) {
	for ctx.Err() == nil {
		if r.at == dead.Load() {
			r.at = survivors[(r.id+r.resumes)%len(survivors)]
			r.resumes++
		}
		err := r.stream(ctx, hub)
		if ctx.Err() != nil {
			return
		}
		if err != nil && r.at != dead.Load() && len(r.errs) < 3 {
			r.errs = append(r.errs, fmt.Sprintf("stream on %s after %d ended: %v", r.at, r.last.Load(), err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stream reads one stream on r.at from r's cursor until it ends.
func (r *stormReader) stream(ctx context.Context, hub string) error {
	u := r.at.baseURL() + "/v1/hubs/" + hub + "/stream?after=" + strconv.FormatUint(r.last.Load(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := streamClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d %s", resp.StatusCode, b)
	}
	sse := testkit.NewSSEReader(resp.Body)
	for {
		ev, err := sse.Next()
		if err != nil {
			return err
		}
		if ev.Data == "" {
			continue // the opening comment, a ping
		}
		var m streamMessage
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || (ev.Event != "" && ev.Event != "message") {
			return fmt.Errorf("event %q %q is not a message (%v)", ev.Event, ev.Data, err)
		}
		if ev.ID != strconv.FormatUint(m.Index, 10) {
			return fmt.Errorf("event id %q for message index %d, want them equal", ev.ID, m.Index)
		}
		r.msgs = append(r.msgs, m)
		r.last.Store(m.Index)
	}
}

// TestReconnectStorm is the benchmark's reconnect storm (cmd/bench's storm
// scenario) as a test: SSE readers follow one hub on each of three nodes
// while publishers post through all of them; a follower is killed with
// SIGKILL and its readers all reconnect at once to the survivors with
// after=<their last index>. Every reader, whichever node it read from,
// must end with exactly the hub's log: each index once, in order, none
// missing, with the acknowledged payload at its acknowledged index.
func TestReconnectStorm(t *testing.T) {
	const (
		hub            = "storm"
		readersPerNode = 40
	)
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	victim := without(nodes, leader)[0]
	survivors := without(nodes, victim)

	ctx, cancel := context.WithCancel(context.Background())
	var dead atomic.Pointer[node]
	var wg sync.WaitGroup
	stopReaders := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopReaders()
	var readers []*stormReader
	for i := range 3 * readersPerNode {
		r := &stormReader{id: i, home: nodes[i%3], at: nodes[i%3]}
		readers = append(readers, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx, hub, &dead, survivors)
		}()
	}

	pub := newPublisher(nodes, hub)
	stop := make(chan struct{})
	wait := pub.run(4, stop)
	stopPublishers := sync.OnceFunc(func() { close(stop); wait() })
	defer stopPublishers()
	waitFor(t, 20*time.Second, "every reader to receive messages from its node", func() (bool, string) {
		for _, r := range readers {
			if r.last.Load() < 50 {
				return false, fmt.Sprintf("reader %d on %s is at index %d", r.id, r.home, r.last.Load())
			}
		}
		return true, ""
	})
	dead.Store(victim)
	kill9(t, victim)
	killedAt := pub.count.Load()
	waitFor(t, 20*time.Second, "150 more acknowledged publishes after the kill", func() (bool, string) {
		n := pub.count.Load()
		return n >= killedAt+150, fmt.Sprintf("%d acknowledged, %d at the kill", n, killedAt)
	})
	stopPublishers()
	for _, e := range pub.errs {
		t.Error(e)
	}
	for _, f := range pub.failed {
		t.Errorf("never acknowledged within %s of retries: %s", pub.retry, f)
	}

	// The hub's log, on the leader: every acknowledged payload once at
	// its index, dense from 1.
	final := mustStatus(t, leader).Messages.LastMessage
	hubLog, err := readAll(leader, hub, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hubLog) == 0 || hubLog[len(hubLog)-1].Index != final {
		t.Fatalf("the leader serves %d messages of the hub, its last message index is %d", len(hubLog), final)
	}
	pub.check(t, "the leader's log", hubLog)
	waitFor(t, 20*time.Second, fmt.Sprintf("every reader to reach index %d", final), func() (bool, string) {
		behind := 0
		for _, r := range readers {
			if r.last.Load() < final {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d readers behind", behind)
	})
	stopReaders()

	bad := 0
	for _, r := range readers {
		name := fmt.Sprintf("reader %d (%s, then %s after %d resumes)", r.id, r.home, r.at, r.resumes)
		var problems []string
		if d := diffSequences(name, r.msgs, "the log", hubLog); d != "" {
			problems = append(problems, d)
		}
		if r.home == victim && (r.resumes == 0 || r.at == victim) {
			problems = append(problems, "never moved off the killed node")
		}
		problems = append(problems, r.errs...)
		if len(problems) > 0 {
			if bad++; bad <= 5 {
				t.Errorf("%s: %s", name, strings.Join(problems, "; "))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d readers are wrong", bad, len(readers))
	}
	t.Logf("%d readers (%d on %s) read %d messages each; %d publishes acknowledged, %d before the kill",
		len(readers), readersPerNode, victim, len(hubLog), len(pub.acked), killedAt)
}

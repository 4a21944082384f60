package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReconnectStorm is the benchmark's reconnect storm (cmd/bench's storm
// scenario) as a test: SSE readers (resumingReader) follow one hub from
// the start on each of three nodes while publishers post through all of
// them; a follower is killed with SIGKILL and its readers all reconnect at
// once to the survivors with after=<their last index>. Every reader,
// whichever node it read from, must end with exactly the hub's log: each
// index once, in order, none missing, with the acknowledged payload at its
// acknowledged index.
func TestReconnectStorm(t *testing.T) {
	const (
		hub            = "storm"
		readersPerNode = 40
	)
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 10*time.Second, nodes...)
	victim := without(nodes, leader)[0]

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stopReaders := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopReaders()
	// Reader i reads from node i%3 first; when its stream ends it resumes
	// on the next node of its list, the victim's readers on either
	// survivor.
	var readers []*resumingReader
	for i := range 3 * readersPerNode {
		home := nodes[i%3]
		order := append([]*node{home}, without(nodes, home)...)
		if i%2 == 1 {
			order[1], order[2] = order[2], order[1]
		}
		r := newResumingReader(order, hub)
		readers = append(readers, r)
		wg.Go(func() { r.run(ctx) })
	}

	pub := newPublisher(nodes, hub)
	stopPublishers := pub.start(t, 4)
	waitFor(t, 20*time.Second, "every reader to receive messages from its node", func() (bool, string) {
		for i, r := range readers {
			if r.last() < 50 {
				return false, fmt.Sprintf("reader %d on %s is at index %d", i, r.nodes[0], r.last())
			}
		}
		return true, ""
	})
	kill9(t, victim)
	killedAt := pub.count.Load()
	waitFor(t, 20*time.Second, "150 more acknowledged publishes after the kill", func() (bool, string) {
		n := pub.count.Load()
		return n >= killedAt+150, fmt.Sprintf("%d acknowledged, %d at the kill", n, killedAt)
	})
	stopPublishers()
	pub.reportFailures(t)

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
			if r.last() < final {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d readers behind", behind)
	})
	stopReaders()

	bad := 0
	for i, r := range readers {
		name := fmt.Sprintf("reader %d (%s first)", i, r.nodes[0])
		problems := r.errs
		if d := diffSequences(name, r.msgs, "the log", hubLog); d != "" {
			problems = append(problems, d)
		}
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

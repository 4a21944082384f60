package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestConcurrentPublishReplicates publishes 300 messages round-robin to the
// three nodes from several goroutines. Every node then serves the same
// sequence from cursor 0: all 300 exactly once, at indexes 1..300, each at
// the index its publisher was given. A retry with the same Idempotency-Key
// returns the original index and appends nothing.
func TestConcurrentPublishReplicates(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	const (
		hub        = "chat"
		publishers = 6
		perWorker  = 50
		total      = publishers * perWorker
	)

	type ack struct {
		index uint64
		msg   streamMessage
		key   string
	}
	var (
		mu     sync.Mutex
		acks   = map[string]ack{} // by payload id
		errs   []string
		wg     sync.WaitGroup
		before = mustStatus(t, nodes[0]).Messages.LastMessage
	)
	if before != 0 {
		t.Fatalf("fresh cluster: last_message %d, want 0", before)
	}
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				k := w*perWorker + i
				n := nodes[k%len(nodes)]
				id := fmt.Sprintf("w%d-m%d", w, i)
				target := fmt.Sprintf("target%d", w)
				body := messageBody(target, id, k, map[string]any{"worker": w, "seq": i})
				pr, err := publish(n, hub, body, "key-"+id)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Sprintf("%s via %s: %v", id, n, err))
				case pr.Status != http.StatusAccepted:
					errs = append(errs, fmt.Sprintf("%s via %s: got %d %s, want 202", id, n, pr.Status, pr.Body))
				case pr.Duplicate:
					errs = append(errs, fmt.Sprintf("%s via %s: first publish answered Backplane-Duplicate: true", id, n))
				default:
					args, _ := json.Marshal([]any{id, k, map[string]any{"worker": w, "seq": i}})
					acks[id] = ack{index: pr.Index, key: "key-" + id, msg: streamMessage{Index: pr.Index, Target: target, Arguments: args}}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	if len(acks) != total {
		t.Fatalf("acknowledged %d publishes, want %d", len(acks), total)
	}
	byIndex := map[uint64]string{}
	for id, a := range acks {
		if other, dup := byIndex[a.index]; dup {
			t.Errorf("index %d acknowledged for both %s and %s", a.index, other, id)
		}
		byIndex[a.index] = id
	}

	sequences := map[string][]streamMessage{}
	waitFor(t, 15*time.Second, fmt.Sprintf("all %d messages on every node", total), func() (bool, string) {
		for _, n := range nodes {
			msgs, err := readAll(n, hub, 0)
			if err != nil {
				return false, err.Error()
			}
			if len(msgs) < total {
				return false, fmt.Sprintf("%s has %d of %d messages", n, len(msgs), total)
			}
			sequences[n.id] = msgs
		}
		return true, ""
	})

	ref := sequences[nodes[0].id]
	for _, n := range nodes[1:] {
		if d := diffSequences(n.id, sequences[n.id], nodes[0].id, ref); d != "" {
			t.Errorf("the nodes serve different sequences from cursor 0: %s", d)
		}
	}
	for _, n := range nodes {
		msgs := sequences[n.id]
		if len(msgs) != total {
			t.Errorf("%s serves %d messages, want %d", n, len(msgs), total)
		}
		checkDense(t, n.id, msgs, 1)
		seen := map[string]int{}
		for _, m := range msgs {
			var args []json.RawMessage
			var id string
			if err := json.Unmarshal(m.Arguments, &args); err != nil || len(args) == 0 || json.Unmarshal(args[0], &id) != nil {
				t.Errorf("%s: message %v does not carry a payload id", n, m)
				continue
			}
			seen[id]++
			a, ok := acks[id]
			switch {
			case !ok:
				t.Errorf("%s: message %v was never acknowledged", n, m)
			case !m.same(a.msg):
				t.Errorf("%s: payload %s is %v, want %v (the acknowledged index and content)", n, id, m, a.msg)
			}
		}
		for id := range acks {
			if seen[id] != 1 {
				t.Errorf("%s: payload %s appears %d times, want exactly once", n, id, seen[id])
			}
		}
	}
	if t.Failed() {
		return
	}

	// Retries with the same keys, through other nodes, are duplicates.
	retried := 0
	for id, a := range acks {
		if retried == 9 {
			break
		}
		n := nodes[retried%len(nodes)]
		var args []any
		_ = json.Unmarshal(a.msg.Arguments, &args)
		pr, err := publish(n, hub, messageBody(a.msg.Target, args...), a.key)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Status != http.StatusAccepted || pr.Index != a.index || !pr.Duplicate {
			t.Errorf("retry of %s with its Idempotency-Key via %s: got %d index %d duplicate %v, want 202 index %d duplicate true",
				id, n, pr.Status, pr.Index, pr.Duplicate, a.index)
		}
		retried++
	}
	for _, n := range nodes {
		if st := mustStatus(t, n); st.Messages.LastMessage != total {
			t.Errorf("%s after idempotent retries: last_message %d, want %d", n, st.Messages.LastMessage, total)
		}
	}
}

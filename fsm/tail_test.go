package fsm_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/hashicorp/raft"
)

// randomPublish is a publish to one of two hubs with a random audience,
// names and exclusions.
func randomPublish(rng *rand.Rand, seq int) fsm.Command {
	pick := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			if rng.IntN(2) == 0 {
				out = append(out, fmt.Sprint(prefix, i))
			}
		}
		if len(out) == 0 {
			out = []string{fmt.Sprint(prefix, rng.IntN(n))}
		}
		return out
	}
	p := &fsm.Publish{Hub: []string{hub, "other"}[rng.IntN(4)/3], Target: "recv", Arguments: fmt.Appendf(nil, "[%d]", seq)}
	switch rng.IntN(4) {
	case 0:
		p.Audience = fsm.ToAll
		if rng.IntN(3) == 0 {
			p.Excluded = pick("c", 3)
		}
	case 1:
		p.Audience, p.Names = fsm.ToGroups, pick("g", 4)
		if rng.IntN(4) == 0 {
			p.Excluded = pick("c", 3)
		}
	case 2:
		p.Audience, p.Names = fsm.ToUsers, pick("u", 3)
	default:
		p.Audience, p.Names = fsm.ToConnections, pick("c", 3)
	}
	if rng.IntN(10) == 0 {
		p.IdempotencyKey = fmt.Sprint("key", rng.IntN(20)) // some are duplicates
	}
	return fsm.EncodePublish(p)
}

// randomReader reads hub with a random choice of streams.
func randomReader(rng *rand.Rand) *fsm.Filter {
	r := &fsm.Filter{Hub: []string{hub, "other"}[rng.IntN(4)/3], Broadcast: rng.IntN(2) == 0}
	for i := range 4 {
		if rng.IntN(3) == 0 {
			r.Groups = append(r.Groups, fmt.Sprint("g", i))
		}
	}
	for i := range 3 {
		if rng.IntN(4) == 0 {
			r.Users = append(r.Users, fmt.Sprint("u", i))
		}
		if rng.IntN(4) == 0 {
			r.Connections = append(r.Connections, fmt.Sprint("c", i))
		}
	}
	if rng.IntN(2) == 0 {
		r.Self = fmt.Sprint("c", rng.IntN(3))
	}
	return r
}

// The in-memory tail answers exactly what the store answers: for random
// histories, with retention trimming them, random readers and cursors
// before, inside and past the tail get the same pages from Read and
// ReadAll as from the store.
func TestTailPagesMatchTheStore(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	tf := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: 6000}, IdempotencyWindow: time.Hour})
	servedByTail := 0
	seq := 0
	for round := range 40 {
		// Batches of entries of 1–4 commands, as Raft hands them over.
		var batch []*raft.Log
		for range 1 + rng.IntN(5) {
			var cmds []fsm.Command
			for range 1 + rng.IntN(4) {
				cmds = append(cmds, randomPublish(rng, seq))
				seq++
			}
			batch = append(batch, tf.Entry(t0+int64(round)*int64(time.Second), cmds...))
		}
		if round%10 == 9 {
			// A burst larger than the tail: the oldest leave it.
			for range 30 {
				var cmds []fsm.Command
				for range 100 {
					cmds = append(cmds, randomPublish(rng, seq))
					seq++
				}
				batch = append(batch, tf.Entry(t0+int64(round)*int64(time.Second), cmds...))
			}
		}
		tf.ApplyBatch(batch)

		last, first := tf.LastMessage(), tf.FirstMessage()
		lo, hi := fsm.TailBounds(tf.FSM)
		if hi != last || lo < first {
			t.Fatalf("round %d: tail holds %d..%d, want it to end at the last message %d and start at or after the first retained %d", round, lo, hi, last, first)
		}
		cursors := []uint64{0, first - 1, lo - 1, lo, last - 1, last, last + 3}
		for range 6 {
			cursors = append(cursors, uint64(rng.Int64N(int64(last)+2)))
		}
		for _, after := range cursors {
			if after >= lo-1 {
				servedByTail++
			}
			for _, limit := range []int{1, 3, 256} {
				for range 4 {
					r := randomReader(rng)
					got, err := tf.Read(r, after, limit)
					if err != nil {
						t.Fatal(err)
					}
					want, err := fsm.ReadStore(tf.FSM, r, after, limit)
					if err != nil {
						t.Fatal(err)
					}
					if !samePage(got, want) {
						t.Fatalf("round %d, reader %+v after %d limit %d:\n tail  %+v (indexes %v)\n store %+v (indexes %v)",
							round, *r, after, limit, pageSummary(got), indexesOf(got.Messages), pageSummary(want), indexesOf(want.Messages))
					}
				}
				got, err := tf.ReadAll(after, limit)
				if err != nil {
					t.Fatal(err)
				}
				want, err := fsm.ReadAllStore(tf.FSM, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if !samePage(got, want) {
					t.Fatalf("round %d, ReadAll after %d limit %d: tail %v next %d, store %v next %d",
						round, after, limit, indexesOf(got.Messages), got.Next, indexesOf(want.Messages), want.Next)
				}
			}
		}
	}
	if servedByTail == 0 {
		t.Fatal("no cursor was inside the tail: the test compared the store with itself")
	}
}

// samePage compares pages; no messages is no messages, nil slice or not.
func samePage(a, b fsm.Page) bool {
	if len(a.Messages) == 0 && len(b.Messages) == 0 {
		a.Messages, b.Messages = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func pageSummary(p fsm.Page) string {
	return fmt.Sprintf("{next %d reset %v oldest %d, %d messages}", p.Next, p.Reset, p.Oldest, len(p.Messages))
}

// The tail keeps only retained messages: once retention trims, a reader
// behind the history gets the reset from the store, not stale messages
// from memory.
func TestTailRespectsRetention(t *testing.T) {
	tf := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: 50}})
	for range 120 {
		tf.mustApply(t0, toAll())
	}
	lo, hi := fsm.TailBounds(tf.FSM)
	if first := tf.FirstMessage(); lo != first || hi != 120 {
		t.Fatalf("tail holds %d..%d, want the retained %d..120", lo, hi, first)
	}
	page, err := tf.Read(&fsm.Filter{Hub: hub, Broadcast: true}, 10, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !page.Reset || page.Oldest != lo || len(page.Messages) == 0 || page.Messages[0].Index != lo {
		t.Fatalf("read after 10: got reset %v oldest %d messages %v, want a reset to %d and the messages from there", page.Reset, page.Oldest, indexesOf(page.Messages), lo)
	}
}

// A batch with more messages than the tail holds (a replay after a
// restart) leaves the newest ones in the tail, consecutive up to the last.
func TestTailAfterAHugeBatch(t *testing.T) {
	tf := newTestFSM(t, fsm.Config{})
	tf.mustApply(t0, toAll())
	var batch []*raft.Log
	for range 100 {
		cmds := make([]fsm.Command, 100)
		for i := range cmds {
			cmds[i] = toAll()
		}
		batch = append(batch, tf.Entry(t0, cmds...))
	}
	tf.ApplyBatch(batch)
	lo, hi := fsm.TailBounds(tf.FSM)
	if hi != 10_001 || hi-lo+1 != 4096 {
		t.Fatalf("tail holds %d..%d, want the newest 4,096 messages up to 10001", lo, hi)
	}
	page, err := tf.Read(&fsm.Filter{Hub: hub, Broadcast: true}, hi-3, 10)
	if err != nil || len(page.Messages) != 3 || page.Messages[0].Index != hi-2 {
		t.Fatalf("read after %d: got %v, %v, want the last three", hi-3, indexesOf(page.Messages), err)
	}
}

package fsm_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// applyAudiences applies each publish in an entry of its own, stamped
// t0 plus the index it will get.
func (tf *testFSM) applyAudiences(cmds ...fsm.Command) {
	tf.tb.Helper()
	for _, c := range cmds {
		tf.mustApply(t0+int64(tf.LastMessage()+1), c)
	}
}

// mixedHistory is a history of every kind of message; the comment gives
// each one's index.
func mixedHistory(t *testing.T) *testFSM {
	f := newTestFSM(t, fsm.Config{})
	custom := func(p fsm.Publish) fsm.Command {
		if p.Target == "" {
			p.Target = "t"
		}
		return fsm.EncodePublish(&p)
	}
	f.applyAudiences(
		toAll(),                                                // 1
		publish(fsm.ToGroups, "g1"),                            // 2
		publish(fsm.ToGroups, "g2"),                            // 3
		publish(fsm.ToGroups, "g3"),                            // 4: another group
		publish(fsm.ToUsers, "u1"),                             // 5
		publish(fsm.ToConnections, "cX"),                       // 6
		publish(fsm.ToGroups, "g1", "g2"),                      // 7: two of the reader's groups
		custom(fsm.Publish{Hub: "other", Audience: fsm.ToAll}), // 8
		custom(fsm.Publish{Hub: "other", Audience: fsm.ToGroups, Names: []string{"g1"}}), // 9
		toAll("me"), // 10: excludes the reader
		custom(fsm.Publish{Hub: hub, Audience: fsm.ToGroups, Names: []string{"g1"}, Excluded: []string{"x", "me"}}), // 11
		toAll("someone"), // 12
		custom(fsm.Publish{Hub: hub, Audience: fsm.ToGroups, Names: []string{"g3", "g1", "g3"}, Excluded: []string{"x"},
			Target: "recv13", Arguments: []byte(`[13,"a"]`)}), // 13
	)
	return f
}

func TestReadAudiences(t *testing.T) {
	f := mixedHistory(t)
	for _, c := range []struct {
		name string
		r    fsm.Filter
		want []uint64
	}{
		{"broadcast and groups", fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1", "g2"}, Self: "me"},
			[]uint64{1, 2, 3, 7, 12, 13}},
		{"without self", fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g2", "g1"}},
			[]uint64{1, 2, 3, 7, 10, 11, 12, 13}},
		{"group named twice", fsm.Filter{Hub: hub, Groups: []string{"g1", "g1"}}, []uint64{2, 7, 11, 13}},
		{"broadcast only", fsm.Filter{Hub: hub, Broadcast: true, Self: "someone"}, []uint64{1, 10}},
		{"user", fsm.Filter{Hub: hub, Users: []string{"u1"}}, []uint64{5}},
		{"connection", fsm.Filter{Hub: hub, Connections: []string{"cX"}, Self: "cX"}, []uint64{6}},
		{"other hub", fsm.Filter{Hub: "other", Broadcast: true, Groups: []string{"g1", "g2"}}, []uint64{8, 9}},
		{"nothing followed", fsm.Filter{Hub: hub}, nil},
		{"unknown hub", fsm.Filter{Hub: "none", Broadcast: true}, nil},
	} {
		page := f.read(&c.r, 0, 100)
		checkIndexes(t, c.name, indexesOf(page.Messages), c.want)
		if page.Next != 13 || page.Reset {
			t.Fatalf("%s: got Next %d Reset %v, want 13 false", c.name, page.Next, page.Reset)
		}
	}
}

func TestReadMessageFields(t *testing.T) {
	f := mixedHistory(t)
	page := f.read(&fsm.Filter{Hub: hub, Groups: []string{"g3"}}, 12, 10)
	if len(page.Messages) != 1 {
		t.Fatalf("messages: got %d, want 1", len(page.Messages))
	}
	got := page.Messages[0]
	want := fsm.Message{Index: 13, Time: t0 + 13, Hub: hub, Audience: fsm.ToGroups, Names: []string{"g3", "g1", "g3"},
		Excluded: []string{"x"}, Target: "recv13", Arguments: []byte(`[13,"a"]`)}
	if got.Index != want.Index || got.Time != want.Time || got.Hub != want.Hub || got.Audience != want.Audience ||
		!slices.Equal(got.Names, want.Names) || !slices.Equal(got.Excluded, want.Excluded) ||
		got.Target != want.Target || string(got.Arguments) != string(want.Arguments) {
		t.Fatalf("message: got %+v, want %+v", got, want)
	}
}

func TestReadPaging(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	var want []uint64
	for i := uint64(1); i <= 1000; i += 64 {
		cmds := make([]fsm.Command, 0, 64)
		for j := i; j < i+64 && j <= 1000; j++ {
			switch j % 4 {
			case 0:
				cmds = append(cmds, toAll())
				want = append(want, j)
			case 1:
				cmds = append(cmds, publish(fsm.ToGroups, "g1"))
				want = append(want, j)
			case 2:
				cmds = append(cmds, publish(fsm.ToGroups, "other"))
			case 3:
				cmds = append(cmds, publish(fsm.ToUsers, "u"))
			}
		}
		f.mustApply(t0, cmds...)
	}
	r := &fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1"}}
	for _, limit := range []int{1, 7, 10, 499, 500, 501, 5000} {
		checkIndexes(t, "paged read", f.readAll(r, 0, limit), want)
	}

	// Each full page ends where its last message is; the rest of the
	// history is read from there.
	page := f.read(r, 0, 10)
	checkIndexes(t, "first page", indexesOf(page.Messages), want[:10])
	if page.Next != want[9] {
		t.Fatalf("first page: got Next %d, want %d", page.Next, want[9])
	}
	// A limit of zero or less reads one message.
	for _, limit := range []int{0, -5} {
		if page := f.read(r, 0, limit); len(page.Messages) != 1 || page.Next != want[0] {
			t.Fatalf("limit %d: got %v Next %d, want [%d] Next %d", limit, indexesOf(page.Messages), page.Next, want[0], want[0])
		}
	}
}

func TestReadNextSkipsOtherReaders(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll())
	f.mustApply(t0, repeat(publish(fsm.ToGroups, "g3"), 49)...)
	r := &fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1"}}
	if page := f.read(r, 0, 1); !slices.Equal(indexesOf(page.Messages), []uint64{1}) || page.Next != 1 {
		t.Fatalf("first read: got %v Next %d, want [1] Next 1", indexesOf(page.Messages), page.Next)
	}
	if page := f.read(r, 1, 10); len(page.Messages) != 0 || page.Next != 50 {
		t.Fatalf("read past other readers' messages: got %v Next %d, want none Next 50", indexesOf(page.Messages), page.Next)
	}
	f.mustApply(t0, publish(fsm.ToGroups, "g1"))
	if page := f.read(r, 50, 10); !slices.Equal(indexesOf(page.Messages), []uint64{51}) || page.Next != 51 {
		t.Fatalf("read of the next message: got %v Next %d, want [51] Next 51", indexesOf(page.Messages), page.Next)
	}
}

func TestReadBeyondLastMessage(t *testing.T) {
	f := mixedHistory(t)
	r := &fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1"}}
	for _, after := range []uint64{13, 14, 1000, math.MaxUint64 - 1, math.MaxUint64} {
		page := f.read(r, after, 10)
		if len(page.Messages) != 0 || page.Next != after || page.Reset {
			t.Fatalf("Read(after %d): got %v Next %d Reset %v, want none Next %d Reset false",
				after, indexesOf(page.Messages), page.Next, page.Reset, after)
		}
	}
}

// TestReadSelfExcludedPage checks that a page whose messages all exclude
// the reader still moves its cursor, and that WaitRead keeps reading past
// such a page instead of waiting for a new entry.
func TestReadSelfExcludedPage(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll("me"), toAll("me"), toAll("me"), toAll())
	r := &fsm.Filter{Hub: hub, Broadcast: true, Self: "me"}
	if page := f.read(r, 0, 2); len(page.Messages) != 0 || page.Next != 2 {
		t.Fatalf("Read: got %v Next %d, want none Next 2", indexesOf(page.Messages), page.Next)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := f.WaitRead(ctx, r, 0, 1)
	if err != nil || !slices.Equal(indexesOf(page.Messages), []uint64{4}) {
		t.Fatalf("WaitRead: got %v, %v, want [4], nil", indexesOf(page.Messages), err)
	}
}

type waitResult struct {
	page fsm.Page
	err  error
}

// waitRead runs WaitRead in a goroutine and returns where its answer will be.
func (tf *testFSM) waitRead(ctx context.Context, r *fsm.Filter, after uint64) <-chan waitResult {
	done := make(chan waitResult, 1)
	go func() {
		page, err := tf.WaitRead(ctx, r, after, 10)
		done <- waitResult{page, err}
	}()
	return done
}

func TestWaitReadReturnsAvailable(t *testing.T) {
	f := mixedHistory(t)
	page, err := f.WaitRead(context.Background(), &fsm.Filter{Hub: hub, Users: []string{"u1"}}, 0, 10)
	if err != nil || !slices.Equal(indexesOf(page.Messages), []uint64{5}) {
		t.Fatalf("WaitRead: got %v, %v, want [5], nil", indexesOf(page.Messages), err)
	}
}

func TestWaitReadBlocksUntilMatch(t *testing.T) {
	f := mixedHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := f.waitRead(ctx, &fsm.Filter{Hub: hub, Groups: []string{"g1"}}, f.LastMessage())

	// Messages for other readers do not end the wait.
	f.mustApply(t0, publish(fsm.ToGroups, "g3"), toAll())
	f.mustApply(t0, publish(fsm.ToUsers, "u1"))
	f.mustApply(t0, publish(fsm.ToGroups, "g1"), publish(fsm.ToGroups, "g2"))
	res := <-done
	if res.err != nil || !slices.Equal(indexesOf(res.page.Messages), []uint64{17}) || res.page.Next != 18 {
		t.Fatalf("WaitRead: got %v Next %d, %v, want [17] Next 18, nil", indexesOf(res.page.Messages), res.page.Next, res.err)
	}
}

func TestWaitReadEndsWithContext(t *testing.T) {
	f := mixedHistory(t)
	r := &fsm.Filter{Hub: hub, Groups: []string{"g9"}}

	ctx, cancel := context.WithCancel(context.Background())
	done := f.waitRead(ctx, r, 0)
	f.mustApply(t0, toAll()) // wakes the reader, which goes back to waiting
	cancel()
	res := <-done
	if !errors.Is(res.err, context.Canceled) || len(res.page.Messages) != 0 {
		t.Fatalf("cancelled WaitRead: got %v, %v, want no messages, %v", indexesOf(res.page.Messages), res.err, context.Canceled)
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if page, err := f.WaitRead(ctx, r, 0, 10); !errors.Is(err, context.DeadlineExceeded) || len(page.Messages) != 0 {
		t.Fatalf("WaitRead past its deadline: got %v, %v, want no messages, %v", indexesOf(page.Messages), err, context.DeadlineExceeded)
	}
}

func TestWaitReadEndsOnClose(t *testing.T) {
	f := mixedHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := f.waitRead(ctx, &fsm.Filter{Hub: hub, Groups: []string{"g9"}}, 0)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
	if res := <-done; res.err == nil || errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("WaitRead on a closed store: got error %v, want the store's", res.err)
	}
}

package fsm_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// checkRetained fails the test unless exactly the messages first..last are
// retained, and the counters, the stored records and the stream index all
// agree on it.
func checkRetained(t *testing.T, f *testFSM, first, last uint64) fsm.Stats {
	t.Helper()
	if f.FirstMessage() != first || f.LastMessage() != last {
		t.Fatalf("first, last: got %d, %d, want %d, %d", f.FirstMessage(), f.LastMessage(), first, last)
	}
	st, n, size := mustStats(t, f)
	if st.FirstMessage != first || st.LastMessage != last || st.RetainedMessages != last+1-first ||
		n != st.RetainedMessages || st.RetainedBytes != size {
		t.Fatalf("Stats: got %+v with %d records of %d bytes stored, want messages %d..%d", st, n, size, first, last)
	}
	indexes, err := fsm.StreamIndexes(f.FSM)
	if err != nil {
		t.Fatalf("StreamIndexes: got error %v, want nil", err)
	}
	for _, idx := range indexes {
		if idx < first || idx > last {
			t.Fatalf("stream index entry for message %d: want none outside %d..%d", idx, first, last)
		}
	}
	return st
}

func TestRetentionByCount(t *testing.T) {
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: 100}})
	for range 25 {
		f.mustApply(t0, repeat(toAll(), 10)...)
	}
	checkRetained(t, f, 151, 250)
	r := &fsm.Filter{Hub: hub, Broadcast: true}

	page := f.read(r, 0, 1000)
	if !page.Reset || page.Oldest != 151 || page.Next != 250 {
		t.Fatalf("Read(0): got Reset %v Oldest %d Next %d, want true 151 250", page.Reset, page.Oldest, page.Next)
	}
	checkIndexes(t, "Read(0)", indexesOf(page.Messages), span(151, 250))

	page = f.read(r, 149, 10)
	if !page.Reset || page.Oldest != 151 || page.Next != 160 {
		t.Fatalf("Read(149): got Reset %v Oldest %d Next %d, want true 151 160", page.Reset, page.Oldest, page.Next)
	}
	checkIndexes(t, "Read(149)", indexesOf(page.Messages), span(151, 160))
	checkIndexes(t, "the rest", f.readAll(r, page.Next, 10), span(161, 250))

	// A cursor at the oldest message's predecessor missed nothing.
	page = f.read(r, 150, 1000)
	if page.Reset || page.Oldest != 0 {
		t.Fatalf("Read(150): got Reset %v Oldest %d, want false 0", page.Reset, page.Oldest)
	}
	checkIndexes(t, "Read(150)", indexesOf(page.Messages), span(151, 250))

	// Retention applies after each entry: a batch bigger than the bound
	// keeps only its newest messages.
	f.mustApply(t0, repeat(toAll(), 150)...)
	checkRetained(t, f, 301, 400)
}

// recordSize is the stored size of one toAll() message stamped t0.
func recordSize(t *testing.T) uint64 {
	t.Helper()
	f := newTestFSM(t, fsm.Config{})
	f.mustApply(t0, toAll())
	return checkRetained(t, f, 1, 1).RetainedBytes
}

func TestRetentionByBytes(t *testing.T) {
	size := recordSize(t)
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxBytes: 10*size + size/2}})
	for range 3 {
		f.mustApply(t0, repeat(toAll(), 10)...)
	}
	if st := checkRetained(t, f, 21, 30); st.RetainedBytes != 10*size {
		t.Fatalf("RetainedBytes: got %d, want %d", st.RetainedBytes, 10*size)
	}

	// With messages of many sizes the bound still holds after every entry.
	rng := rand.New(rand.NewPCG(1, 2))
	bound := uint64(64 << 10)
	f = newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxBytes: bound}})
	var first uint64 = 1
	for range 200 {
		args := bytes.Repeat([]byte("a"), rng.IntN(4000))
		f.mustApply(t0, fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToGroups, Names: []string{"g"}, Target: "t", Arguments: args}))
		st := checkRetained(t, f, f.FirstMessage(), f.LastMessage())
		if st.RetainedBytes > bound || st.FirstMessage < first {
			t.Fatalf("after message %d: got %d bytes from %d, want at most %d bytes, first not below %d",
				st.LastMessage, st.RetainedBytes, st.FirstMessage, bound, first)
		}
		first = st.FirstMessage
	}
	if first == 1 {
		t.Fatalf("first retained message: got 1, want trimming to have happened")
	}
}

func TestRetentionByAge(t *testing.T) {
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxAge: time.Minute}})
	at := func(d time.Duration) int64 { return t0 + int64(d) }
	f.mustApply(at(0), toAll())
	f.mustApply(at(30*time.Second), toAll())
	f.mustApply(at(60*time.Second), toAll())
	checkRetained(t, f, 1, 3) // message 1 is exactly MaxAge old: not older

	f.mustApply(at(61*time.Second), toAll())
	checkRetained(t, f, 2, 4)

	// Any command entry's stamp moves "now", not only publishes.
	f.mustApply(at(100*time.Second), join("g", fsm.MemberUser, "u"))
	checkRetained(t, f, 3, 4)

	// Everything expired: the history is empty and reads say so.
	f.mustApply(at(10*time.Minute), leave("g", fsm.MemberUser, "u"))
	if st := checkRetained(t, f, 5, 4); st.RetainedBytes != 0 {
		t.Fatalf("RetainedBytes: got %d, want 0", st.RetainedBytes)
	}
	r := &fsm.Filter{Hub: hub, Broadcast: true}
	page := f.read(r, 0, 10)
	if !page.Reset || page.Oldest != 5 || page.Next != 4 || len(page.Messages) != 0 {
		t.Fatalf("Read(0) of an empty history: got %+v, want Reset, Oldest 5, Next 4, no messages", page)
	}
	if page := f.read(r, 4, 10); page.Reset || page.Next != 4 || len(page.Messages) != 0 {
		t.Fatalf("Read(4) of an empty history: got %+v, want no reset, Next 4, no messages", page)
	}

	checkIndexes(t, "next publish", indexesOf(f.mustApply(at(10*time.Minute), toAll())), []uint64{5})
	checkRetained(t, f, 5, 5)
	page = f.read(r, 0, 10)
	if !page.Reset || page.Oldest != 5 || !slices.Equal(indexesOf(page.Messages), []uint64{5}) {
		t.Fatalf("Read(0): got %+v, want Reset, Oldest 5, message 5", page)
	}
}

func TestRetentionTrimsStreams(t *testing.T) {
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: 50}})
	readers := []*fsm.Filter{
		{Hub: hub, Broadcast: true},
		{Hub: hub, Groups: []string{"g1"}},
		{Hub: hub, Groups: []string{"g1", "g2"}, Users: []string{"u"}},
		{Hub: hub, Connections: []string{"c"}},
	}
	want := make([][]uint64, len(readers)) // retained messages of each reader
	for i := uint64(1); i <= 200; i++ {
		var cmd fsm.Command
		var to []int // the readers it is for
		switch i % 5 {
		case 0:
			cmd, to = toAll(), []int{0}
		case 1:
			cmd, to = publish(fsm.ToGroups, "g1", "g2"), []int{1, 2}
		case 2:
			cmd, to = publish(fsm.ToGroups, "g2"), []int{2}
		case 3:
			cmd, to = publish(fsm.ToUsers, "u", "v"), []int{2}
		case 4:
			cmd, to = publish(fsm.ToConnections, "c"), []int{3}
		}
		f.mustApply(t0, cmd)
		for _, r := range to {
			want[r] = append(want[r], i)
		}
	}
	checkRetained(t, f, 151, 200)
	for i, r := range readers {
		retained := slices.DeleteFunc(slices.Clone(want[i]), func(idx uint64) bool { return idx < 151 })
		for _, after := range []uint64{0, 100, 150} {
			got := f.readAll(r, after, 7)
			checkIndexes(t, "reader after trimming", got, retained)
		}
		page, err := f.WaitRead(context.Background(), r, 10, 5)
		if err != nil || !page.Reset || page.Oldest != 151 {
			t.Fatalf("WaitRead(10) of reader %d: got %+v, %v, want an immediate reset to 151", i, page, err)
		}
	}
	// Each retained message left one stream entry per distinct name.
	indexes, err := fsm.StreamIndexes(f.FSM)
	if err != nil {
		t.Fatalf("StreamIndexes: got error %v, want nil", err)
	}
	if wantEntries := 10 * (1 + 2 + 1 + 2 + 1); len(indexes) != wantEntries {
		t.Fatalf("stream index entries: got %d, want %d", len(indexes), wantEntries)
	}
}

// The counters behind the metrics agree with the store's Stats.
func TestRetainedCountersMatchStats(t *testing.T) {
	f := newTestFSM(t, fsm.Config{Retention: fsm.Retention{MaxMessages: 7}})
	for i := 0; i < 20; i++ {
		f.mustApply(t0, publish(fsm.ToAll))
	}
	st, err := f.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if f.RetainedMessages() != st.RetainedMessages || f.RetainedBytes() != st.RetainedBytes || st.RetainedMessages != 7 {
		t.Fatalf("counters %d messages / %d bytes, Stats %+v, want equal and 7 messages", f.RetainedMessages(), f.RetainedBytes(), st)
	}
}

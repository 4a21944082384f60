package fsm_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
	"github.com/hashicorp/raft"
)

// benchArgs is a JSON arguments array of about 200 bytes.
var benchArgs = []byte(`[{"user":"alice","room":"lobby","text":"` + strings.Repeat("lorem ipsum ", 12) + `","seq":123456}]`)

func benchPublish(a fsm.Audience, names ...string) fsm.Command {
	return fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: a, Names: names, Target: "newMessage", Arguments: benchArgs})
}

func BenchmarkEncodePublish(b *testing.B) {
	p := &fsm.Publish{Hub: hub, Audience: fsm.ToGroups, Names: []string{"lobby"}, Excluded: []string{"conn-1"},
		Target: "newMessage", Arguments: benchArgs, IdempotencyKey: "0b9a3c1e-5d2f-4e8a-9c7b-1f2e3d4c5b6a"}
	b.ReportAllocs()
	b.SetBytes(int64(len(fsm.EncodePublish(p))))
	for b.Loop() {
		fsm.EncodePublish(p)
	}
}

// BenchmarkApplyBatch applies batches of 8 entries of 64 publishes each, as
// Raft hands a BatchingFSM a run of committed entries.
func BenchmarkApplyBatch(b *testing.B) { benchApplyBatch(b, false, 8, 64) }

// BenchmarkApplyBatchSmall applies one entry per batch, of 1 and of 8
// messages: what a node applies at a few hundred to a thousand entries a
// second (REST publishers, 1 to 256 in flight).
func BenchmarkApplyBatchSmall(b *testing.B) {
	for _, per := range []int{1, 8} {
		b.Run(fmt.Sprintf("msgs=%d", per), func(b *testing.B) { benchApplyBatch(b, false, 1, per) })
	}
}

// BenchmarkApplyBatchSynced is BenchmarkApplyBatch with the store fsynced
// on every commit: what the store would cost if it did not rely on the
// Raft log for durability (docs/architecture.md).
func BenchmarkApplyBatchSynced(b *testing.B) { benchApplyBatch(b, true, 8, 64) }

func benchApplyBatch(b *testing.B, synced bool, entries, perEntry int) {
	f := newTestFSM(b, fsm.Config{Retention: fsm.DefaultRetention})
	fsm.SetStoreSync(f.FSM, synced)
	cmds := make([]fsm.Command, perEntry)
	for i := range cmds {
		if i%2 == 0 {
			cmds[i] = benchPublish(fsm.ToAll)
		} else {
			cmds[i] = benchPublish(fsm.ToGroups, "lobby")
		}
	}
	data := fsm.EncodeEntry(t0, cmds)
	logs := make([]*raft.Log, entries)
	b.ReportAllocs()
	b.SetBytes(int64(entries * len(data)))
	ops := 0
	for b.Loop() {
		for i := range logs {
			logs[i] = f.Log(raft.LogCommand, data)
		}
		f.ApplyBatch(logs)
		ops++
	}
	b.ReportMetric(float64(ops*entries*perEntry)/b.Elapsed().Seconds(), "msgs/s")
	if got, want := f.LastMessage(), uint64(ops*entries*perEntry); got != want {
		b.Fatalf("LastMessage: got %d, want %d", got, want)
	}
}

// BenchmarkReadCursor reads 100 messages after a random cursor, for a
// reader of broadcasts and two groups, in a history of 100k messages of
// which it follows half.
func BenchmarkReadCursor(b *testing.B) {
	const messages, perEntry = 100_000, 64
	f := newTestFSM(b, fsm.Config{})
	audiences := []fsm.Command{
		benchPublish(fsm.ToAll), benchPublish(fsm.ToAll),
		benchPublish(fsm.ToGroups, "g1"), benchPublish(fsm.ToGroups, "g2"),
		benchPublish(fsm.ToGroups, "g3"), benchPublish(fsm.ToGroups, "g4"),
		benchPublish(fsm.ToUsers, "u1"), benchPublish(fsm.ToConnections, "c1"),
	}
	var logs []*raft.Log
	for n := 0; n < messages; n += perEntry {
		cmds := make([]fsm.Command, 0, perEntry)
		for i := n; i < n+perEntry && i < messages; i++ {
			cmds = append(cmds, audiences[i%len(audiences)])
		}
		logs = append(logs, f.Entry(t0, cmds...))
		if len(logs) == 64 {
			f.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	f.ApplyBatch(logs)
	if got := f.LastMessage(); got != messages {
		b.Fatalf("LastMessage: got %d, want %d", got, messages)
	}
	r := &fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1", "g2"}, Self: "c9"}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	read := 0
	for b.Loop() {
		page, err := f.Read(r, rng.Uint64N(messages-200), 100)
		if err != nil || len(page.Messages) != 100 {
			b.Fatalf("Read: got %d messages, %v, want 100, nil", len(page.Messages), err)
		}
		read += len(page.Messages)
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkReadLive is what a live stream does after each applied batch:
// read the few newest messages for its streams. The cursor is inside the
// in-memory tail, so no store transaction is involved.
func BenchmarkReadLive(b *testing.B) {
	const messages = 10_000
	f := newTestFSM(b, fsm.Config{})
	audiences := []fsm.Command{benchPublish(fsm.ToAll), benchPublish(fsm.ToGroups, "g1"), benchPublish(fsm.ToGroups, "g3")}
	for n := 0; n < messages; n += 100 {
		cmds := make([]fsm.Command, 0, 100)
		for i := n; i < n+100; i++ {
			cmds = append(cmds, audiences[i%len(audiences)])
		}
		f.ApplyBatch([]*raft.Log{f.Entry(t0, cmds...)})
	}
	r := &fsm.Filter{Hub: hub, Broadcast: true, Groups: []string{"g1", "g2"}}
	rng := rand.New(rand.NewPCG(3, 4))
	b.ReportAllocs()
	read := 0
	for b.Loop() {
		page, err := f.Read(r, messages-1-rng.Uint64N(16), 256)
		if err != nil || len(page.Messages) == 0 {
			b.Fatalf("Read: got %d messages, %v, want some", len(page.Messages), err)
		}
		read += len(page.Messages)
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkApplyBatchManyGroups applies entries of 8 messages, each to one
// of 1,000 groups in turn, so the stream index grows in 1,000 places at
// once (not only at its end); it reports the store's bytes per message,
// which the page fill decides.
func BenchmarkApplyBatchManyGroups(b *testing.B) {
	const perEntry, groups = 8, 1000
	dir := b.TempDir()
	f := newTestFSM(b, fsm.Config{Dir: dir, Retention: fsm.DefaultRetention})
	cmds := make([]fsm.Command, perEntry)
	g := 0
	b.ReportAllocs()
	ops := 0
	for b.Loop() {
		for i := range cmds {
			cmds[i] = benchPublish(fsm.ToGroups, fmt.Sprintf("g%04d", g%groups))
			g++
		}
		f.ApplyBatch([]*raft.Log{f.Log(raft.LogCommand, fsm.EncodeEntry(t0, cmds))})
		ops++
	}
	b.StopTimer()
	if got, want := f.LastMessage(), uint64(ops*perEntry); got != want {
		b.Fatalf("LastMessage: got %d, want %d", got, want)
	}
	if st, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		b.ReportMetric(float64(st.Size())/float64(ops*perEntry), "store-B/msg")
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/raftlog"
)

// The bare engine: three hashicorp/raft members in this process, opened
// through raftlog.Open so that they get exactly Backplane's Raft set-up
// (raft-boltdb with fsync behind NewLogCache(1024), MaxAppendEntries 1024,
// BatchApplyCh, the same timeouts, file snapshots, TCP transport on
// 127.0.0.1) but a no-op state machine and no HTTP, proposer or store.

// noopFSM applies nothing.
type noopFSM struct{}

func (noopFSM) Apply(*raft.Log) any                 { return nil }
func (noopFSM) ApplyBatch(logs []*raft.Log) []any   { return make([]any, len(logs)) }
func (noopFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (noopFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}
func (noopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (noopSnapshot) Release()                          {}

type noopSnapshot struct{}

// bareRaft is a running three-member cluster.
type bareRaft struct {
	dir      string
	members  []*raftlog.Raft
	leader   *raftlog.Raft
	stopOnce sync.Once
}

// startBareRaft opens three members under a new temp dir: the first
// bootstraps and adds the others.
func startBareRaft(ctx context.Context) (br *bareRaft, err error) {
	dir, err := os.MkdirTemp("", "backplane-bench-raft-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	br = &bareRaft{dir: dir}
	defer func() {
		if err != nil {
			br.stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("raft%d", i)
		r, err := raftlog.Open(raftlog.Config{
			ID: id, Dir: filepath.Join(dir, id), BindAddr: "127.0.0.1:0", Bootstrap: i == 1, FSM: noopFSM{},
			// cmd/node's defaults.
			SnapshotThreshold: 8192, SnapshotInterval: 30 * time.Second, TrailingLogs: 10240,
		})
		if err != nil {
			return br, fmt.Errorf("open %s: %w", id, err)
		}
		br.members = append(br.members, r)
	}
	br.leader = br.members[0]
	deadline := time.Now().Add(20 * time.Second)
	for !br.leader.IsLeader() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return br, fmt.Errorf("bare raft: no leader within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range br.members[1:] {
		if _, err := br.leader.Join(m.ID(), m.LocalAddr()); err != nil {
			return br, fmt.Errorf("bare raft: add %s: %w", m.ID(), err)
		}
	}
	return br, nil
}

// stop shuts the members down and removes their directory, once.
func (br *bareRaft) stop() {
	br.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, m := range br.members {
			wg.Add(1)
			go func() { defer wg.Done(); _ = m.Shutdown() }()
		}
		wg.Wait()
		_ = os.RemoveAll(br.dir)
	})
}

// throughput applies entries of perEntry messages of size bytes each,
// inflight at a time, for d.
func (br *bareRaft) throughput(ctx context.Context, perEntry, size, inflight int, d time.Duration, prog *counter) raftBaseline {
	data := make([]byte, perEntry*size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	var h histogram
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t := time.Now()
				if _, _, err := br.leader.Apply(ctx, data); err != nil {
					return
				}
				h.Record(time.Since(t))
				prog.Add(int64(perEntry))
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	entries := float64(h.Summary().Count)
	return raftBaseline{MsgsPerEntry: perEntry, Inflight: inflight, MsgsPerSec: entries * float64(perEntry) / secs,
		EntriesPerSec: entries / secs, Commit: h.Summary()}
}

// paced applies entries of perEntry messages at rate messages/s for d,
// each in its own goroutine, and times each commit.
func (br *bareRaft) paced(ctx context.Context, perEntry, size int, rate float64, d time.Duration, prog *counter) raftBaseline {
	data := make([]byte, perEntry*size)
	var h histogram
	start := time.Now()
	interval := time.Duration(float64(time.Second) * float64(perEntry) / rate)
	var wg sync.WaitGroup
	next := start
	n := 0
	for time.Since(start) < d && ctx.Err() == nil {
		time.Sleep(time.Until(next))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			if _, _, err := br.leader.Apply(ctx, data); err == nil {
				h.Record(time.Since(t))
				prog.Add(int64(perEntry))
			}
		}()
		n++
		next = next.Add(interval)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return raftBaseline{MsgsPerEntry: perEntry, Rate: rate, MsgsPerSec: float64(h.Summary().Count) * float64(perEntry) / secs,
		EntriesPerSec: float64(n) / secs, Commit: h.Summary()}
}

// roundPerEntry turns a measured messages-per-entry ratio into a whole
// number of at least 1.
func roundPerEntry(v float64) int {
	if v < 1 || math.IsNaN(v) {
		return 1
	}
	return int(math.Round(v))
}

// perEntryGroup is one bare-Raft throughput measurement to make: the
// messages per entry it batches and the scenarios it is compared with.
type perEntryGroup struct {
	perEntry  int
	scenarios []string
}

// groupByPerEntry groups scenarios by their messages per Raft entry,
// rounded as roundPerEntry does, keeping the order of first appearance:
// scenarios that round to the same number share one measurement.
func groupByPerEntry(names []string, ratios []float64) []perEntryGroup {
	var groups []perEntryGroup
next:
	for i, name := range names {
		k := roundPerEntry(ratios[i])
		for g := range groups {
			if groups[g].perEntry == k {
				groups[g].scenarios = append(groups[g].scenarios, name)
				continue next
			}
		}
		groups = append(groups, perEntryGroup{perEntry: k, scenarios: []string{name}})
	}
	return groups
}

// throughputScenarios are the as-fast-as-possible scenarios whose
// committed publishes/s are compared with the bare Raft throughput.
var throughputScenarios = []string{"hifreq", "hifreq-ws"}

// throughputGroups returns the bare-Raft throughput measurements the
// report's scenarios need: one per distinct messages per entry of the
// throughput scenarios that ran, or 1 message per entry for hifreq when
// no scenario ran at all (a baselines-only run).
func throughputGroups(rep *report) []perEntryGroup {
	var names []string
	var ratios []float64
	for _, name := range throughputScenarios {
		s := rep.scenario(name)
		if s == nil {
			continue
		}
		v := 1.0
		if m := s.metric("messages per Raft entry"); m != nil {
			v = m.Value
		}
		names, ratios = append(names, name), append(ratios, v)
	}
	if len(names) == 0 && len(rep.Scenarios) == 0 {
		names, ratios = []string{"hifreq"}, []float64{1}
	}
	return groupByPerEntry(names, ratios)
}

// raftBaselines measures the bare engine at the messages per entry that
// the scenarios achieved.
func (b *bench) raftBaselines(ctx context.Context, rep *report) error {
	groups := throughputGroups(rep)
	if len(groups) == 0 && (rep.scenario("broadcast") == nil || b.cfg.rate <= 0) {
		return nil // nothing to compare with
	}
	b.logf("baseline: bare three-member Raft cluster in this process")
	br, err := startBareRaft(ctx)
	if err != nil {
		return err
	}
	b.cleanups.add(br.stop, nil)
	defer br.stop()
	for _, g := range groups {
		for _, inflight := range b.cfg.baselineInflight {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			k := g.perEntry
			c := &counter{name: "committed"}
			prog := startProgress(b.stderr, fmt.Sprintf("bare raft %d msgs/entry, %d in flight", k, inflight), c)
			meter := selfMeter()
			rb := br.throughput(ctx, k, b.cfg.size, inflight, b.cfg.duration, c)
			rb.Usage = meter.Stop(ctx)
			prog.Stop()
			rb.For, rb.AlsoFor = g.scenarios[0], g.scenarios[1:]
			rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
		}
	}
	if s := rep.scenario("broadcast"); s != nil && b.cfg.rate > 0 {
		k := 1
		if m := s.metric("messages per Raft entry"); m != nil {
			k = roundPerEntry(m.Value)
		}
		c := &counter{name: "committed"}
		prog := startProgress(b.stderr, fmt.Sprintf("bare raft %s msgs/s", human(b.cfg.rate)), c)
		meter := selfMeter()
		rb := br.paced(ctx, k, b.cfg.size, b.cfg.rate, b.cfg.duration, c)
		rb.Usage = meter.Stop(ctx)
		prog.Stop()
		rb.For = "broadcast"
		rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
	}
	return ctx.Err()
}

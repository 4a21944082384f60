package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/raftlog"
)

// The bare engine: three hashicorp/raft members in this process, opened
// through raftlog.Open so that they get exactly Backplane's Raft set-up
// (raft-boltdb with fsync behind NewLogCache(1024), MaxAppendEntries 1024,
// BatchApplyCh, the same timeouts, file snapshots, TCP transport on
// 127.0.0.1) but a no-op state machine and no HTTP, proposer or store.

// noopFSM applies nothing. While a paced phase runs it also times, on
// each member, the phase's entries from the proposer's stamp in their
// data (see stampEntry) to their apply.
type noopFSM struct {
	br     *bareRaft
	member int
}

func (f *noopFSM) Apply(l *raft.Log) any {
	f.ApplyBatch([]*raft.Log{l})
	return nil
}

func (f *noopFSM) ApplyBatch(logs []*raft.Log) []any {
	if rec := f.br.stamps.Load(); rec != nil {
		now := time.Now()
		leader := false
		if m := f.br.member(f.member); m != nil {
			leader = m.IsLeader()
		}
		for _, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			if st, ok := rec.stampOf(l.Data); ok {
				rec.record(f.member, leader, now.Sub(time.Unix(0, st)))
			}
		}
	}
	return make([]any, len(logs))
}

func (*noopFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (*noopFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}
func (noopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (noopSnapshot) Release()                          {}

type noopSnapshot struct{}

// stampRecording times one paced phase's entries on every member. An
// entry of the phase starts with the proposer's stamp (Unix nanoseconds,
// taken just before raft.Apply) and the phase's tag, 8 bytes each, little
// endian; other entries (those of the throughput phases) are not timed.
type stampRecording struct {
	tag uint64
	// Applies by a member that was the leader when it applied, and by
	// members that were followers.
	leader, followers histogram
	// Per member: applies timed, and those made as leader.
	applied, asLeader []atomic.Int64
}

const stampBytes = 16 // stamp and tag

func newStampRecording(members int) *stampRecording {
	return newStampRecordingTag(members, rand.Uint64()|1)
}

// newStampRecordingTag records the phase tagged tag (non-zero): the member
// processes all record the tag their parent chose.
func newStampRecordingTag(members int, tag uint64) *stampRecording {
	return &stampRecording{tag: tag, applied: make([]atomic.Int64, members), asLeader: make([]atomic.Int64, members)}
}

// stampEntry writes the stamp and tag at the start of data (which must
// have room for them).
func (rec *stampRecording) stampEntry(data []byte, stamp time.Time) {
	binary.LittleEndian.PutUint64(data[0:8], uint64(stamp.UnixNano()))
	binary.LittleEndian.PutUint64(data[8:16], rec.tag)
}

// stampOf reads an entry's stamp if it is one of the phase's.
func (rec *stampRecording) stampOf(data []byte) (int64, bool) {
	if len(data) < stampBytes || binary.LittleEndian.Uint64(data[8:16]) != rec.tag {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(data[0:8])), true
}

func (rec *stampRecording) record(member int, leader bool, d time.Duration) {
	if leader {
		rec.leader.Record(d)
		rec.asLeader[member].Add(1)
	} else {
		rec.followers.Record(d)
	}
	rec.applied[member].Add(1)
}

// total is the applies timed on every member.
func (rec *stampRecording) total() int64 {
	var n int64
	for i := range rec.applied {
		n += rec.applied[i].Load()
	}
	return n
}

// bareRaft is a running three-member cluster.
type bareRaft struct {
	dir      string
	mu       sync.Mutex      // guards members while they open
	members  []*raftlog.Raft // members[i] has state machine i
	leader   *raftlog.Raft   // the first leader
	stamps   atomic.Pointer[stampRecording]
	stopOnce sync.Once
}

// member returns member i, or nil while it is still opening.
func (br *bareRaft) member(i int) *raftlog.Raft {
	br.mu.Lock()
	defer br.mu.Unlock()
	if i < len(br.members) {
		return br.members[i]
	}
	return nil
}

// currentLeader is the member that is leader now (or the first leader if
// none is at this moment) and its position.
func (br *bareRaft) currentLeader() (*raftlog.Raft, int) {
	for i, m := range br.members {
		if m.IsLeader() {
			return m, i
		}
	}
	return br.leader, slices.Index(br.members, br.leader)
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
		r, err := raftlog.Open(bareMemberConfig(id, filepath.Join(dir, id), i == 1, &noopFSM{br: br, member: i - 1}))
		if err != nil {
			return br, fmt.Errorf("open %s: %w", id, err)
		}
		br.mu.Lock()
		br.members = append(br.members, r)
		br.mu.Unlock()
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

// bareMemberConfig is the Raft set-up of one bare member, in this process
// or in a member process of its own (see baseline_raft_procs.go): a
// loopback TCP transport on a free port and cmd/node's defaults.
func bareMemberConfig(id, dir string, bootstrap bool, fsm raft.FSM) raftlog.Config {
	return raftlog.Config{
		ID: id, Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, FSM: fsm,
		// cmd/node's defaults.
		SnapshotThreshold: 8192, SnapshotInterval: 30 * time.Second, TrailingLogs: 10240,
	}
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
	leader, _ := br.currentLeader()
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
				if _, _, err := leader.Apply(ctx, data); err != nil {
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
// each in its own goroutine, and times each commit. Each entry carries
// the proposer's stamp, taken just before raft.Apply, and every member's
// state machine times it to its apply: "stamp → applied" as the nodes'
// backplane_apply_delay_seconds does, the leader being whichever member
// is leader when it applies.
func (br *bareRaft) paced(ctx context.Context, perEntry, size int, rate float64, d time.Duration, prog *counter) raftBaseline {
	leader, li := br.currentLeader()
	rec := newStampRecording(len(br.members))
	br.stamps.Store(rec)
	defer br.stamps.Store(nil)
	pl := pacedLoad(ctx, leader, rec, perEntry, size, rate, d, prog)
	rb := pl.baseline(perEntry, rate)
	// The followers apply a little after the leader's commit returned.
	want := int64(pl.commit.Summary().Count) * int64(len(br.members))
	for deadline := time.Now().Add(5 * time.Second); rec.total() < want && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	br.stamps.Store(nil)
	ids := make([]string, len(br.members))
	for i, m := range br.members {
		ids[i] = m.ID()
	}
	rb.addStampDelays(rec, ids, li, want)
	return rb
}

// pacedResult is what a paced load measured on the proposer.
type pacedResult struct {
	commit  *histogram // stamp → Apply returned, per committed entry
	offered int        // entries proposed
	secs    float64
}

// pacedLoad proposes entries of perEntry messages of size bytes to leader
// at rate messages/s for d, each in its own goroutine, stamped with rec's
// stamp just before raft.Apply, and times each commit. The in-process
// baseline and the leader of the member processes run this same loop.
func pacedLoad(ctx context.Context, leader *raftlog.Raft, rec *stampRecording, perEntry, size int, rate float64, d time.Duration, prog *counter) pacedResult {
	h := new(histogram)
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
			data := make([]byte, max(perEntry*size, stampBytes))
			t := time.Now()
			rec.stampEntry(data, t)
			if _, _, err := leader.Apply(ctx, data); err == nil {
				h.Record(time.Since(t))
				prog.Add(int64(perEntry))
			}
		}()
		n++
		next = next.Add(interval)
	}
	wg.Wait()
	return pacedResult{commit: h, offered: n, secs: time.Since(start).Seconds()}
}

// baseline is the paced measurement's line, without its stamp delays.
func (pl pacedResult) baseline(perEntry int, rate float64) raftBaseline {
	c := pl.commit.Summary()
	return raftBaseline{MsgsPerEntry: perEntry, Rate: rate, MsgsPerSec: float64(c.Count) * float64(perEntry) / pl.secs,
		EntriesPerSec: float64(pl.offered) / pl.secs, Commit: c}
}

// addStampDelays adds the stamp → applied lines of a paced phase, and
// notes on who applied as leader and on applies not seen.
func (rb *raftBaseline) addStampDelays(rec *stampRecording, members []string, firstLeader int, want int64) {
	rb.Delays = append(rb.Delays,
		namedLatency{Name: "stamp → applied, leader", Latency: rec.leader.Summary()},
		namedLatency{Name: "stamp → applied, followers", Latency: rec.followers.Summary()})
	var leaders []string
	for i, m := range members {
		if rec.asLeader[i].Load() > 0 {
			leaders = append(leaders, m)
		}
	}
	rb.Leader = strings.Join(leaders, ", ")
	if rb.Leader != "" {
		rb.Notes = append(rb.Notes, "stamp → applied: from the stamp taken just before raft.Apply to the no-op state machine's ApplyBatch call on each member "+
			"(leader: "+rb.Leader+", as it was when applying); within ~3%, where the nodes' lines are interpolated within ×1.5 buckets and end after their store's write")
	}
	if len(leaders) > 1 || (len(leaders) == 1 && firstLeader >= 0 && leaders[0] != members[firstLeader]) {
		rb.Notes = append(rb.Notes, fmt.Sprintf("the leader changed during the phase: applies as leader by %s", rb.Leader))
	}
	if got := rec.total(); got < want {
		rb.Notes = append(rb.Notes, fmt.Sprintf("%d of %d applies (committed entries × %d members) not seen within 5s", want-got, want, len(members)))
	}
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
	s := rep.scenario("broadcast")
	if s == nil || b.cfg.rate <= 0 {
		return ctx.Err()
	}
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
	if !b.cfg.baselineProcs || ctx.Err() != nil {
		return ctx.Err()
	}
	// The same measurement with each member in a process of its own; the
	// in-process members stop first, so that only these run.
	br.stop()
	rb, err = b.raftProcsBaseline(ctx, k)
	if err != nil {
		return fmt.Errorf("three processes: %w", err)
	}
	rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
	return ctx.Err()
}

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/raftlog"
)

// The bare engine: three hashicorp/raft members opened through
// raftlog.Open, so that they get exactly Backplane's Raft set-up
// (raft-boltdb with fsync behind NewLogCache(1024), MaxAppendEntries 1024,
// BatchApplyCh, the same timeouts, file snapshots, TCP transport on
// 127.0.0.1) but a state machine that only times entries, and no HTTP,
// proposer or store. The members run in this process or each in a process
// of its own (raftprocs.go); either way the benchmark drives them through
// the same requests (memberRequest).

// memberServer is one bare member and its state machine. While a paced
// phase runs it times the phase's entries from the proposer's stamp in
// their data (see stampEntry) to their apply.
type memberServer struct {
	r   *raftlog.Raft
	rec atomic.Pointer[stampRecording] // the phase being timed; nil: none
	// committed counts the messages the paced load committed from here.
	committed counter
}

func (m *memberServer) Apply(l *raft.Log) any {
	m.ApplyBatch([]*raft.Log{l})
	return nil
}

func (m *memberServer) ApplyBatch(logs []*raft.Log) []any {
	if rec := m.rec.Load(); rec != nil {
		now := time.Now()
		leader := m.r.IsLeader()
		for _, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			if st, ok := rec.stampOf(l.Data); ok {
				rec.record(leader, now.Sub(time.Unix(0, st)))
			}
		}
	}
	return make([]any, len(logs))
}

func (*memberServer) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (*memberServer) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}

type noopSnapshot struct{}

func (noopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (noopSnapshot) Release()                          {}

// openMember opens member id under dir: a loopback TCP transport on a
// free port and cmd/node's defaults; the first member bootstraps.
func openMember(id, dir string, bootstrap bool, cfg func(*raftlog.Config)) (*memberServer, error) {
	m := &memberServer{}
	rc := raftlog.Config{
		ID: id, Dir: filepath.Join(dir, id), BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, FSM: m,
		SnapshotThreshold: 8192, SnapshotInterval: 30 * time.Second, TrailingLogs: 10240, // cmd/node's defaults
	}
	if cfg != nil {
		cfg(&rc)
	}
	r, err := raftlog.Open(rc)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", id, err)
	}
	m.r = r
	return m, nil
}

// stampRecording times one paced phase's entries on one member. An entry
// of the phase starts with the proposer's stamp (Unix nanoseconds, taken
// just before raft.Apply) and the phase's tag, 8 bytes each, little
// endian; other entries (those of the throughput phases) are not timed.
type stampRecording struct {
	tag uint64
	// Applies made while this member was the leader, and while it was a
	// follower.
	leader, followers histogram
	applied, asLeader atomic.Int64
}

const stampBytes = 16 // stamp and tag

// stampEntry writes the stamp and tag at the start of data (which must
// have room for them).
func stampEntry(data []byte, tag uint64, stamp time.Time) {
	binary.LittleEndian.PutUint64(data[0:8], uint64(stamp.UnixNano()))
	binary.LittleEndian.PutUint64(data[8:16], tag)
}

// stampOf reads an entry's stamp if it is one of the phase's.
func (rec *stampRecording) stampOf(data []byte) (int64, bool) {
	if len(data) < stampBytes || binary.LittleEndian.Uint64(data[8:16]) != rec.tag {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(data[0:8])), true
}

func (rec *stampRecording) record(leader bool, d time.Duration) {
	if leader {
		rec.leader.Record(d)
		rec.asLeader.Add(1)
	} else {
		rec.followers.Record(d)
	}
	rec.applied.Add(1)
}

// memberRequest is one request to a bare member; Op picks the fields that
// matter.
type memberRequest struct {
	Op       string        `json:"op"`             // status, join, record, paced, stats
	ID       string        `json:"id,omitempty"`   // join: the member to add
	Addr     string        `json:"addr,omitempty"` // join: its Raft address
	Tag      uint64        `json:"tag,omitempty"`  // record: the phase to time (0: stop timing)
	PerEntry int           `json:"per_entry,omitempty"`
	Size     int           `json:"size,omitempty"`
	Rate     float64       `json:"rate,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
}

// memberReply is a member's answer.
type memberReply struct {
	Err      string `json:"err,omitempty"`
	RaftAddr string `json:"raft_addr,omitempty"` // the first line a member process writes
	// status: whether it leads, knows a leader, and how many members it
	// sees.
	Leader    bool `json:"leader,omitempty"`
	HasLeader bool `json:"has_leader,omitempty"`
	Members   int  `json:"members,omitempty"`
	// stats: what its state machine timed of the phase tagged Stats.Tag.
	Stats memberStats `json:"stats"`
	// paced: the commit latencies of the load it proposed.
	Commit  histSnapshot `json:"commit"`
	Offered int          `json:"offered,omitempty"`
	Seconds float64      `json:"seconds,omitempty"`
}

// memberStats is a member's recording of one phase.
type memberStats struct {
	ID        string       `json:"id"`
	Tag       uint64       `json:"tag"`
	Leader    histSnapshot `json:"leader"`
	Followers histSnapshot `json:"followers"`
	Applied   int64        `json:"applied"`
	AsLeader  int64        `json:"as_leader"`
}

// handle answers one request.
func (m *memberServer) handle(ctx context.Context, req memberRequest) memberReply {
	var out memberReply
	var err error
	switch req.Op {
	case "status":
		st := m.r.Status()
		var members []raftlog.Member
		members, err = m.r.Members()
		out.Leader, out.HasLeader, out.Members = st.State == "Leader", st.LeaderID != "", len(members)
	case "join":
		_, err = m.r.Join(req.ID, req.Addr)
	case "record":
		if req.Tag == 0 {
			m.rec.Store(nil)
		} else {
			m.rec.Store(&stampRecording{tag: req.Tag})
		}
	case "stats":
		out.Stats.ID = m.r.ID()
		if rec := m.rec.Load(); rec != nil {
			out.Stats = memberStats{ID: m.r.ID(), Tag: rec.tag, Leader: rec.leader.snapshot(), Followers: rec.followers.snapshot(),
				Applied: rec.applied.Load(), AsLeader: rec.asLeader.Load()}
		}
	case "paced":
		rec := m.rec.Load()
		switch {
		case req.PerEntry < 1 || req.Size < 0 || req.Rate <= 0 || req.Duration <= 0:
			err = fmt.Errorf("paced: want per_entry ≥ 1, size ≥ 0, rate > 0, duration > 0, got %+v", req)
		case rec == nil:
			err = errors.New("paced: no recording: send record first")
		case !m.r.IsLeader():
			err = errors.New("paced: not the leader")
		default:
			pl := pacedLoad(ctx, m.r, rec.tag, req.PerEntry, req.Size, req.Rate, req.Duration, &m.committed)
			out.Commit, out.Offered, out.Seconds = pl.commit.snapshot(), pl.offered, pl.secs
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

// bareMember is a member the benchmark drives: in this process or in one
// of its own.
type bareMember interface {
	name() string
	pid() int // 0: this process
	call(ctx context.Context, req memberRequest) (memberReply, error)
}

// localMember is a member in this process.
type localMember struct{ *memberServer }

func (l localMember) name() string { return l.r.ID() }
func (l localMember) pid() int     { return 0 }
func (l localMember) call(ctx context.Context, req memberRequest) (memberReply, error) {
	out := l.handle(ctx, req)
	if out.Err != "" {
		return out, fmt.Errorf("%s %s: %s", l.name(), req.Op, out.Err)
	}
	return out, nil
}

// bareCluster is three running members.
type bareCluster struct {
	members []bareMember
	local   []*memberServer // the members in this process
	stop    func()          // ends the members and removes their directory, once
}

// startBareRaft opens three members in this process under a new temp
// dir: the first bootstraps and adds the others.
func startBareRaft(ctx context.Context) (bc *bareCluster, err error) {
	dir, err := os.MkdirTemp("", "backplane-bench-raft-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	bc = &bareCluster{}
	bc.stop = sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, m := range bc.local {
			wg.Add(1)
			go func() { defer wg.Done(); _ = m.r.Shutdown() }()
		}
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	defer func() {
		if err != nil {
			bc.stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		m, err := openMember(fmt.Sprintf("raft%d", i), dir, i == 1, nil)
		if err != nil {
			return bc, err
		}
		bc.local = append(bc.local, m)
		bc.members = append(bc.members, localMember{m})
	}
	return bc, bc.form(ctx, func(i int) string { return bc.local[i].r.LocalAddr() })
}

// form waits for the first member to lead, has it add the others (whose
// Raft addresses raftAddr gives), and waits until every member sees three
// members and a leader.
func (bc *bareCluster) form(ctx context.Context, raftAddr func(i int) string) error {
	if err := bc.waitStatus(ctx, 0, func(r memberReply) bool { return r.Leader }); err != nil {
		return err
	}
	for i, m := range bc.members[1:] {
		if _, err := bc.members[0].call(ctx, memberRequest{Op: "join", ID: m.name(), Addr: raftAddr(i + 1)}); err != nil {
			return err
		}
	}
	for i := range bc.members {
		if err := bc.waitStatus(ctx, i, func(r memberReply) bool { return r.HasLeader && r.Members == len(bc.members) }); err != nil {
			return err
		}
	}
	return nil
}

// waitStatus polls member i's status until ok holds, for 20 s at most.
func (bc *bareCluster) waitStatus(ctx context.Context, i int, ok func(memberReply) bool) error {
	m := bc.members[i]
	var last memberReply
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		r, err := m.call(ctx, memberRequest{Op: "status"})
		if err == nil && ok(r) {
			return nil
		}
		last = r
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("bare raft: %s not ready within 20s (leader %v, knows a leader %v, %d members)", m.name(), last.Leader, last.HasLeader, last.Members)
}

// leader returns the member that leads now.
func (bc *bareCluster) leader(ctx context.Context) (int, error) {
	for i, m := range bc.members {
		if r, err := m.call(ctx, memberRequest{Op: "status"}); err == nil && r.Leader {
			return i, nil
		}
	}
	return -1, errors.New("bare raft: no member leads")
}

// throughput applies entries of perEntry messages of size bytes each,
// inflight at a time, for d, through the leader (in this process).
func (bc *bareCluster) throughput(ctx context.Context, perEntry, size, inflight int, d time.Duration, prog *counter) (raftBaseline, error) {
	li, err := bc.leader(ctx)
	if err != nil {
		return raftBaseline{}, err
	}
	leader := bc.local[li].r
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
		EntriesPerSec: entries / secs, Commit: h.Summary()}, nil
}

// pacedResult is what a paced load measured on the proposer.
type pacedResult struct {
	commit  *histogram // stamp → Apply returned, per committed entry
	offered int        // entries proposed
	secs    float64
}

// pacedLoad proposes entries of perEntry messages of size bytes to leader
// at rate messages/s for d, each in its own goroutine, stamped with the
// phase's tag and the time just before raft.Apply, and times each commit.
func pacedLoad(ctx context.Context, leader *raftlog.Raft, tag uint64, perEntry, size int, rate float64, d time.Duration, prog *counter) pacedResult {
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
			stampEntry(data, tag, t)
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

// paced has the leader propose entries of perEntry messages at rate
// messages/s for d and times each commit; every member's state machine
// times "stamp → applied", as the nodes' backplane_apply_delay_seconds
// does, the leader being whichever member is leader when it applies.
func (bc *bareCluster) paced(ctx context.Context, perEntry, size int, rate float64, d time.Duration) (raftBaseline, error) {
	li, err := bc.leader(ctx)
	if err != nil {
		return raftBaseline{}, err
	}
	tag := rand.Uint64() | 1
	for _, m := range bc.members {
		if _, err := m.call(ctx, memberRequest{Op: "record", Tag: tag}); err != nil {
			return raftBaseline{}, err
		}
	}
	defer func() {
		for _, m := range bc.members {
			_, _ = m.call(context.WithoutCancel(ctx), memberRequest{Op: "record"})
		}
	}()
	r, err := bc.members[li].call(ctx, memberRequest{Op: "paced", PerEntry: perEntry, Size: size, Rate: rate, Duration: d})
	if err != nil {
		return raftBaseline{}, err
	}
	commit := new(histogram)
	if err := commit.merge(r.Commit); err != nil {
		return raftBaseline{}, fmt.Errorf("paced: %w", err)
	}
	c := commit.Summary()
	rb := raftBaseline{MsgsPerEntry: perEntry, Rate: rate, MsgsPerSec: float64(c.Count) * float64(perEntry) / r.Seconds,
		EntriesPerSec: float64(r.Offered) / r.Seconds, Commit: c}
	// The followers apply a little after the leader's commit returned.
	want := int64(c.Count) * int64(len(bc.members))
	var stats []memberStats
	for deadline := time.Now().Add(5 * time.Second); ; {
		stats = stats[:0]
		var got int64
		for _, m := range bc.members {
			r, err := m.call(ctx, memberRequest{Op: "stats"})
			if err != nil {
				return rb, err
			}
			stats = append(stats, r.Stats)
			got += r.Stats.Applied
		}
		if got >= want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return rb, rb.addStampDelays(stats, tag, bc.members[li].name(), want)
}

// addStampDelays adds the stamp → applied lines of a paced phase from the
// members' recordings of the phase tagged tag, and notes on who applied as
// leader and on applies not seen.
func (rb *raftBaseline) addStampDelays(stats []memberStats, tag uint64, firstLeader string, want int64) error {
	var leader, followers histogram
	var leaders []string
	var got int64
	for _, s := range stats {
		if s.Tag != tag {
			return fmt.Errorf("%s timed phase %d, not %d", s.ID, s.Tag, tag)
		}
		if err := errors.Join(leader.merge(s.Leader), followers.merge(s.Followers)); err != nil {
			return fmt.Errorf("%s: %w", s.ID, err)
		}
		if s.AsLeader > 0 {
			leaders = append(leaders, s.ID)
		}
		got += s.Applied
	}
	rb.Delays = append(rb.Delays,
		namedLatency{Name: "stamp → applied, leader", Latency: leader.Summary()},
		namedLatency{Name: "stamp → applied, followers", Latency: followers.Summary()})
	rb.Leader = strings.Join(leaders, ", ")
	if rb.Leader != "" {
		rb.Notes = append(rb.Notes, "stamp → applied: from the stamp taken just before raft.Apply to the no-op state machine's ApplyBatch call on each member "+
			"(leader: "+rb.Leader+", as it was when applying); within ~3%, where the nodes' lines are interpolated within ×1.5 buckets and end after their store's write")
	}
	if len(leaders) > 1 || (len(leaders) == 1 && leaders[0] != firstLeader) {
		rb.Notes = append(rb.Notes, fmt.Sprintf("the leader changed during the phase: applies as leader by %s", rb.Leader))
	}
	if got < want {
		rb.Notes = append(rb.Notes, fmt.Sprintf("%d of %d applies (committed entries × %d members) not seen within 5s", want-got, want, len(stats)))
	}
	return nil
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

// throughputGroups returns the bare-Raft throughput measurements the
// report's scenarios need: one per distinct messages per entry (rounded
// by roundPerEntry) of hifreq and hifreq-ws, in that order, or 1 message
// per entry for hifreq when no scenario ran at all (a baselines-only run).
func throughputGroups(rep *report) []perEntryGroup {
	var groups []perEntryGroup
	if len(rep.Scenarios) == 0 {
		return []perEntryGroup{{1, []string{"hifreq"}}}
	}
next:
	for _, name := range []string{"hifreq", "hifreq-ws"} {
		s := rep.scenario(name)
		if s == nil {
			continue
		}
		k := 1
		if m := s.metric("messages per Raft entry"); m != nil {
			k = roundPerEntry(m.Value)
		}
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

// raftBaselines measures the bare engine at the messages per entry that
// the scenarios achieved, then at broadcast's rate with its members in
// this process and, with -baseline-procs, in three processes.
func (b *bench) raftBaselines(ctx context.Context, rep *report) error {
	groups := throughputGroups(rep)
	bcast := rep.scenario("broadcast")
	paced := bcast != nil && b.cfg.rate > 0
	if len(groups) == 0 && !paced {
		return nil // nothing to compare with
	}
	b.logf("baseline: bare three-member Raft cluster in this process")
	bc, err := startBareRaft(ctx)
	if err != nil {
		return err
	}
	b.cleanups.add(bc.stop, nil)
	defer bc.stop()
	for _, g := range groups {
		for _, inflight := range b.cfg.baselineInflight {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c := &counter{name: "committed"}
			prog := startProgress(b.stderr, fmt.Sprintf("bare raft %d msgs/entry, %d in flight", g.perEntry, inflight), c)
			meter := startUsage(nil)
			rb, err := bc.throughput(ctx, g.perEntry, b.cfg.size, inflight, b.cfg.duration, c)
			rb.Usage = meter.Stop()
			prog.Stop()
			if err != nil {
				return err
			}
			rb.For, rb.AlsoFor = g.scenarios[0], g.scenarios[1:]
			rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
		}
	}
	if !paced {
		return ctx.Err()
	}
	k := 1
	if m := bcast.metric("messages per Raft entry"); m != nil {
		k = roundPerEntry(m.Value)
	}
	b.logf("baseline: bare Raft at %s msgs/s, %d msgs/entry", human(b.cfg.rate), k)
	meter := startUsage(nil)
	rb, err := bc.paced(ctx, k, b.cfg.size, b.cfg.rate, b.cfg.duration)
	rb.Usage = meter.Stop()
	if err != nil {
		return err
	}
	rb.For = "broadcast"
	rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
	if !b.cfg.baselineProcs || ctx.Err() != nil {
		return ctx.Err()
	}
	// The same measurement with each member in a process of its own; the
	// in-process members stop first, so that only these run.
	bc.stop()
	if rb, err = b.raftProcsBaseline(ctx, k); err != nil {
		return fmt.Errorf("three processes: %w", err)
	}
	rep.Baselines.Raft = append(rep.Baselines.Raft, rb)
	return ctx.Err()
}

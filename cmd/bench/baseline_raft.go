package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
// of its own (raftprocs.go); either way the benchmark drives them with the
// same requests (memberRequest).

// memberServer is one bare member and its state machine, which times the
// paced entries from the proposer's stamp in their data (stampEntry) to
// their apply.
type memberServer struct {
	r *raftlog.Raft
	// Applies of stamped entries made while this member was the leader,
	// and while it was a follower.
	leader, followers histogram
}

// stampTag marks a paced entry: its first 8 bytes are the proposer's stamp
// (Unix nanoseconds, taken just before raft.Apply), the next 8 this tag,
// little endian. The throughput phases' entries are letters.
const stampTag uint64 = 0x5354414d50454421

func stampEntry(data []byte, stamp time.Time) {
	binary.LittleEndian.PutUint64(data[0:8], uint64(stamp.UnixNano()))
	binary.LittleEndian.PutUint64(data[8:16], stampTag)
}

// stampOf reads a paced entry's stamp.
func stampOf(data []byte) (int64, bool) {
	if len(data) < 16 || binary.LittleEndian.Uint64(data[8:16]) != stampTag {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(data[0:8])), true
}

func (m *memberServer) Apply(l *raft.Log) any {
	m.ApplyBatch([]*raft.Log{l})
	return nil
}

func (m *memberServer) ApplyBatch(logs []*raft.Log) []any {
	now := time.Now()
	for _, l := range logs {
		if st, ok := stampOf(l.Data); ok && l.Type == raft.LogCommand {
			if m.r.IsLeader() {
				m.leader.Record(now.Sub(time.Unix(0, st)))
			} else {
				m.followers.Record(now.Sub(time.Unix(0, st)))
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

// memberRequest is one request to a bare member; Op picks the fields that
// matter.
type memberRequest struct {
	Op       string        `json:"op"`             // status, join, stats, paced
	ID       string        `json:"id,omitempty"`   // join: the member to add
	Addr     string        `json:"addr,omitempty"` // join: its Raft address
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
	// stats: its applies of paced entries; paced: the commit latencies
	// of the load it proposed, and the entries it proposed.
	AsLeader, AsFollower histSnapshot
	Commit               histSnapshot
	Offered              int
	Seconds              float64
}

// handle answers one request.
func (m *memberServer) handle(ctx context.Context, req memberRequest) memberReply {
	var out memberReply
	var err error
	switch req.Op {
	case "status":
		var members []raftlog.Member
		members, err = m.r.Members()
		st := m.r.Status()
		out.Leader, out.HasLeader, out.Members = st.State == "Leader", st.LeaderID != "", len(members)
	case "join":
		_, err = m.r.Join(req.ID, req.Addr)
	case "stats":
		out.AsLeader, out.AsFollower = m.leader.snapshot(), m.followers.snapshot()
	case "paced":
		if req.PerEntry < 1 || req.Size < 0 || req.Rate <= 0 || req.Duration <= 0 || !m.r.IsLeader() {
			err = fmt.Errorf("paced: want the leader, per_entry ≥ 1, size ≥ 0, rate > 0, duration > 0, got %+v", req)
			break
		}
		h, offered, secs := pacedLoad(ctx, m.r, req.PerEntry, req.Size, req.Rate, req.Duration)
		out.Commit, out.Offered, out.Seconds = h.snapshot(), offered, secs
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
	Pid() int // 0: this process
	call(ctx context.Context, req memberRequest) (memberReply, error)
}

// localMember is a member in this process.
type localMember struct{ *memberServer }

func (l localMember) name() string { return l.r.ID() }
func (l localMember) Pid() int     { return 0 }
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
			wg.Go(func() { _ = m.r.Shutdown() })
		}
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	for i := 1; i <= 3 && err == nil; i++ {
		var m *memberServer
		if m, err = openMember(fmt.Sprintf("raft%d", i), dir, i == 1, nil); err == nil {
			bc.local, bc.members = append(bc.local, m), append(bc.members, localMember{m})
		}
	}
	if err == nil {
		err = bc.form(ctx, func(i int) string { return bc.local[i].r.LocalAddr() })
	}
	if err != nil {
		bc.stop()
	}
	return bc, err
}

// form waits for the first member to lead, has it add the others (whose
// Raft addresses raftAddr gives), and waits until every member sees three
// members and a leader.
func (bc *bareCluster) form(ctx context.Context, raftAddr func(i int) string) error {
	status := func(i int, ok func(memberReply) bool) error {
		var last memberReply
		return poll(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, string) {
			r, err := bc.members[i].call(ctx, memberRequest{Op: "status"})
			last = r
			return err == nil && ok(r), fmt.Sprintf("%s: leader %v, knows a leader %v, %d members, %v",
				bc.members[i].name(), last.Leader, last.HasLeader, last.Members, err)
		})
	}
	if err := status(0, func(r memberReply) bool { return r.Leader }); err != nil {
		return fmt.Errorf("bare raft: %w", err)
	}
	for i, m := range bc.members[1:] {
		if _, err := bc.members[0].call(ctx, memberRequest{Op: "join", ID: m.name(), Addr: raftAddr(i + 1)}); err != nil {
			return err
		}
	}
	for i := range bc.members {
		if err := status(i, func(r memberReply) bool { return r.HasLeader && r.Members == len(bc.members) }); err != nil {
			return fmt.Errorf("bare raft: %w", err)
		}
	}
	return nil
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
func (bc *bareCluster) throughput(ctx context.Context, perEntry, size, inflight int, d time.Duration, prog *counter) (*result, error) {
	li, err := bc.leader(ctx)
	if err != nil {
		return nil, err
	}
	leader := bc.local[li].r
	data := make([]byte, perEntry*size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	var h histogram
	secs, _, _ := drive(ctx, inflight, 0, d, &h, &counter{}, &counter{}, func(int) error {
		_, _, err := leader.Apply(ctx, data)
		if err == nil {
			prog.Add(int64(perEntry))
		}
		return err
	})
	c := h.Summary()
	r := &result{Name: fmt.Sprintf("bare Raft at %d msgs/entry, %d in flight", perEntry, inflight),
		Description: "three members in this process, as fast as they commit",
		Params:      map[string]any{"messages_per_entry": perEntry, "inflight": inflight}}
	r.add("committed messages/s", float64(c.Count)*float64(perEntry)/secs, "msg/s")
	r.add("entries/s", float64(c.Count)/secs, "entry/s")
	r.lat("commit", c)
	return r, nil
}

// pacedLoad proposes entries of perEntry messages of size bytes to leader
// at rate messages/s for d, each in its own goroutine, stamped just before
// raft.Apply, and times each commit; it returns the commit latencies, the
// entries proposed and the seconds it took.
func pacedLoad(ctx context.Context, leader *raftlog.Raft, perEntry, size int, rate float64, d time.Duration) (*histogram, int, float64) {
	h := new(histogram)
	secs, n, _ := drive(ctx, 0, rate/float64(perEntry), d, h, &counter{}, &counter{}, func(int) error {
		data := make([]byte, max(perEntry*size, 16))
		stampEntry(data, time.Now())
		_, _, err := leader.Apply(ctx, data)
		return err
	})
	return h, n, secs
}

// bareThroughput measures bc's throughput at perEntry messages per entry
// and inflight applies in flight, with progress lines and usage, compared
// with the scenarios' committed publishes/s.
func (b *bench) bareThroughput(ctx context.Context, bc *bareCluster, perEntry, inflight int, scenarios ...string) (*result, error) {
	c := &counter{name: "committed"}
	prog := startProgress(b.stderr, fmt.Sprintf("bare raft %d msgs/entry, %d in flight", perEntry, inflight), c)
	meter := startUsage(nil)
	r, err := bc.throughput(ctx, perEntry, b.cfg.size, inflight, b.cfg.duration, c)
	prog.Stop()
	if err != nil {
		return nil, err
	}
	r.Usage = meter.Stop()
	for _, s := range scenarios {
		r.versus = append(r.versus, versus{s, "committed publishes/s", "committed messages/s"})
	}
	return r, nil
}

// paced has the leader propose entries of perEntry messages at rate
// messages/s for d and times each commit; every member's state machine
// times "stamp → applied", as the nodes' backplane_apply_delay_seconds
// does, the leader being whichever member is leader when it applies. It
// runs once per cluster: the members' timings are not reset.
func (bc *bareCluster) paced(ctx context.Context, perEntry, size int, rate float64, d time.Duration) (*result, error) {
	li, err := bc.leader(ctx)
	if err != nil {
		return nil, err
	}
	p, err := bc.members[li].call(ctx, memberRequest{Op: "paced", PerEntry: perEntry, Size: size, Rate: rate, Duration: d})
	if err != nil {
		return nil, err
	}
	var commit histogram
	if err := commit.merge(p.Commit); err != nil {
		return nil, fmt.Errorf("paced: %w", err)
	}
	c := commit.Summary()
	r := &result{Name: fmt.Sprintf("bare Raft at %s msgs/s, %d msgs/entry", human(rate), perEntry),
		Params: map[string]any{"rate": rate, "messages_per_entry": perEntry}}
	r.add("committed messages/s", float64(c.Count)*float64(perEntry)/p.Seconds, "msg/s")
	r.add("entries/s", float64(p.Offered)/p.Seconds, "entry/s")
	r.lat("commit", c)
	// The followers apply a little after the leader's commit returned.
	want := int64(c.Count) * int64(len(bc.members))
	var leader, followers histogram
	var leaders []string
	err = poll(ctx, 5*time.Second, 5*time.Millisecond, func() (bool, string) {
		leader, followers, leaders = histogram{}, histogram{}, nil
		for _, m := range bc.members {
			a, err := m.call(ctx, memberRequest{Op: "stats"})
			if err == nil {
				err = errors.Join(leader.merge(a.AsLeader), followers.merge(a.AsFollower))
			}
			if err != nil {
				return false, err.Error()
			}
			if a.AsLeader.Count > 0 {
				leaders = append(leaders, m.name())
			}
		}
		got := int64(leader.count.Load() + followers.count.Load())
		return got >= want, fmt.Sprintf("%d of %d applies (committed entries × %d members)", got, want, len(bc.members))
	})
	if err != nil {
		r.addNote("not all seen: %v", err)
	}
	r.lat("stamp → applied, leader", leader.Summary())
	r.lat("stamp → applied, followers", followers.Summary())
	if len(leaders) > 0 {
		r.addNote("stamp → applied: from the stamp taken just before raft.Apply to the no-op state machine's ApplyBatch call on each member "+
			"(leader: %s, as it was when applying); within ~3%%, where the nodes' lines are interpolated within ×1.5 buckets and end after their store's write",
			strings.Join(leaders, ", "))
	}
	if len(leaders) > 1 || (len(leaders) == 1 && leaders[0] != bc.members[li].name()) {
		r.addNote("the leader changed during the phase: applies as leader by %s", strings.Join(leaders, ", "))
	}
	r.versus = []versus{{"broadcast", "publish → 202 (commit)", "commit"},
		{"broadcast", "stamp → applied, leader", "stamp → applied, leader"},
		{"broadcast", "stamp → applied, followers", "stamp → applied, followers"},
		{"broadcast", "publish → delivery, other nodes", "stamp → applied, followers"}}
	return r, nil
}

// perEntryOf is the messages per Raft entry r measured, as a whole number
// of at least 1 (1 for a nil r or one without the figure).
func perEntryOf(r *result) int {
	var m *metric
	if r != nil {
		m = r.metric("messages per Raft entry")
	}
	if m == nil || m.Value < 1 || math.IsNaN(m.Value) {
		return 1
	}
	return int(math.Round(m.Value))
}

// perEntryGroup is one bare-Raft throughput measurement to make: the
// messages per entry it batches and the scenarios it is compared with.
type perEntryGroup struct {
	perEntry  int
	scenarios []string
}

// throughputGroups returns the bare-Raft throughput measurements the
// report's scenarios need: one per distinct messages per entry (rounded
// by perEntryOf) of hifreq and hifreq-ws, in that order, or 1 message
// per entry for hifreq when no scenario ran at all (a baselines-only run).
func throughputGroups(rep *report) []perEntryGroup {
	if len(rep.Scenarios) == 0 {
		return []perEntryGroup{{1, []string{"hifreq"}}}
	}
	var groups []perEntryGroup
	for _, name := range []string{"hifreq", "hifreq-ws"} {
		s := rep.scenario(name)
		if s == nil {
			continue
		}
		k := perEntryOf(s)
		if g := slices.IndexFunc(groups, func(g perEntryGroup) bool { return g.perEntry == k }); g >= 0 {
			groups[g].scenarios = append(groups[g].scenarios, name)
		} else {
			groups = append(groups, perEntryGroup{perEntry: k, scenarios: []string{name}})
		}
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
	defer bc.stop()
	for _, g := range groups {
		for _, inflight := range b.cfg.baselineInflight {
			r, err := b.bareThroughput(ctx, bc, g.perEntry, inflight, g.scenarios...)
			if err != nil || ctx.Err() != nil {
				return errors.Join(err, ctx.Err())
			}
			rep.Baselines = append(rep.Baselines, r)
		}
	}
	if !paced {
		return nil
	}
	k := perEntryOf(bcast)
	b.logf("baseline: bare Raft at %s msgs/s, %d msgs/entry", human(b.cfg.rate), k)
	meter := startUsage(nil)
	r, err := bc.paced(ctx, k, b.cfg.size, b.cfg.rate, b.cfg.duration)
	if err != nil {
		return err
	}
	r.Usage = meter.Stop()
	r.Description = "three members in this process, paced"
	rep.Baselines = append(rep.Baselines, r)
	if !b.cfg.baselineProcs || ctx.Err() != nil {
		return ctx.Err()
	}
	// The same measurement with each member in a process of its own; the
	// in-process members stop first, so that only these run.
	bc.stop()
	if r, err = b.raftProcsBaseline(ctx, k); err != nil {
		return fmt.Errorf("three processes: %w", err)
	}
	rep.Baselines = append(rep.Baselines, r)
	return ctx.Err()
}

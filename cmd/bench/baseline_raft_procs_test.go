package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a bare Raft member process, as
// the benchmark binary does: pacedProcs re-executes os.Executable().
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bareMemberCmd {
		os.Exit(runBareRaftMember(os.Args[2:], os.Stderr))
	}
	os.Exit(m.Run())
}

func TestBareMemberArgs(t *testing.T) {
	n := &benchNode{id: "raft2", dataDir: "/tmp/x/raft2"}
	args := bareMemberArgs(n, "http://127.0.0.1:1234")
	if args[0] != bareMemberCmd {
		t.Fatalf("args %q do not start with %s", args, bareMemberCmd)
	}
	cfg, err := parseMemberFlags(args[1:], io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := (memberConfig{id: "raft2", dir: "/tmp/x/raft2", join: "http://127.0.0.1:1234"}); cfg != want {
		t.Errorf("parsed %+v, want %+v", cfg, want)
	}
	// The first member bootstraps: no -join.
	args = bareMemberArgs(&benchNode{id: "raft1", dataDir: "/d"}, "")
	if slices.Contains(args, "-join") {
		t.Errorf("bootstrap member's args %q have -join", args)
	}
	if cfg, err := parseMemberFlags(args[1:], io.Discard); err != nil || cfg.join != "" || cfg.id != "raft1" {
		t.Errorf("parsed %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{{"-id", "x"}, {"-data", "/d"}, {"-id", "x", "-data", "/d", "extra"}, {"-nope"}} {
		if _, err := parseMemberFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNodeLaunchArgs(t *testing.T) {
	got := nodeLaunchArgs(&benchNode{id: "node2", dataDir: "/d/node2"}, []string{"-join", "http://a"})
	want := []string{"-id", "node2", "-data", "/d/node2", "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-log-level", "warn", "-join", "http://a"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHistogramSnapshotMerge(t *testing.T) {
	var all, a, b histogram
	for i := range 5000 {
		d := time.Duration(i*i%7919) * 3 * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	// Through JSON, as between processes.
	var merged histogram
	for _, h := range []*histogram{&a, &b} {
		j, err := json.Marshal(h.snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var s histSnapshot
		if err := json.Unmarshal(j, &s); err != nil {
			t.Fatal(err)
		}
		if err := merged.merge(s); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := merged.Summary(), all.Summary(); got != want {
		t.Errorf("merged %+v, want %+v", got, want)
	}
	if err := merged.merge(histSnapshot{Buckets: [][2]uint64{{histBuckets, 1}}, Count: 1}); err == nil {
		t.Error("bucket out of range merged")
	}
	if got, want := merged.Summary(), all.Summary(); got != want {
		t.Errorf("a rejected snapshot changed the histogram: %+v, want %+v", got, want)
	}
	var empty histogram
	if err := empty.merge(empty.snapshot()); err != nil || empty.Summary().Count != 0 {
		t.Errorf("empty merge: %v, %+v", err, empty.Summary())
	}
}

func TestMergeMemberStats(t *testing.T) {
	const tag = 77
	snap := func(ds ...time.Duration) histSnapshot {
		var h histogram
		for _, d := range ds {
			h.Record(d)
		}
		return h.snapshot()
	}
	ms := time.Millisecond
	stats := []memberStats{
		{ID: "raft1", Tag: tag, Leader: snap(1*ms, 2*ms), Applied: 2, AsLeader: 2},
		{ID: "raft2", Tag: tag, Followers: snap(3*ms, 4*ms), Applied: 2},
		{ID: "raft3", Tag: tag, Followers: snap(5 * ms), Applied: 1},
	}
	rec, err := mergeMemberStats(stats, tag)
	if err != nil {
		t.Fatal(err)
	}
	if l, f := rec.leader.Summary(), rec.followers.Summary(); l.Count != 2 || f.Count != 3 || l.MaxMS != 2 || f.MaxMS != 5 {
		t.Errorf("leader %+v, followers %+v", l, f)
	}
	if rec.total() != 5 || rec.asLeader[0].Load() != 2 || rec.asLeader[1].Load() != 0 {
		t.Errorf("total %d, as leader %d/%d", rec.total(), rec.asLeader[0].Load(), rec.asLeader[1].Load())
	}
	var rb raftBaseline
	rb.addStampDelays(rec, []string{"raft1", "raft2", "raft3"}, 0, 6)
	if rb.Leader != "raft1" {
		t.Errorf("leader %q", rb.Leader)
	}
	if !slices.ContainsFunc(rb.Notes, func(n string) bool { return strings.Contains(n, "1 of 6 applies") }) {
		t.Errorf("notes lack the missing apply: %q", rb.Notes)
	}
	stats[2].Tag = 78
	if _, err := mergeMemberStats(stats, tag); err == nil || !strings.Contains(err.Error(), "raft3") {
		t.Errorf("a member timing another phase: %v", err)
	}
}

func TestFinishComparesProcsBaseline(t *testing.T) {
	s := &scenarioResult{Name: "broadcast"}
	s.lat("publish → 202 (commit)", latency{Count: 10, P50MS: 4, P99MS: 8})
	s.lat("publish → delivery, other nodes", latency{Count: 10, P50MS: 9, P99MS: 30})
	rep := &report{Scenarios: []*scenarioResult{s}}
	delays := func(f float64) []namedLatency {
		return []namedLatency{
			{Name: "stamp → applied, leader", Latency: latency{Count: 10, P50MS: f, P99MS: 2 * f}},
			{Name: "stamp → applied, followers", Latency: latency{Count: 20, P50MS: 1.5 * f, P99MS: 3 * f}},
		}
	}
	rep.Baselines.Raft = []raftBaseline{
		{For: "broadcast", Rate: 1000, MsgsPerEntry: 1, Commit: latency{Count: 10, P50MS: 2, P99MS: 4}, Delays: delays(1)},
		{For: "broadcast", Rate: 1000, MsgsPerEntry: 1, Processes: 3, Commit: latency{Count: 10, P50MS: 4, P99MS: 8}, Delays: delays(2),
			Usage: []usage{{Name: "raft1", CPUPct: 20}, {Name: "raft2", CPUPct: 10}, {Name: "raft3", CPUPct: 10}, {Name: "bench", CPUPct: 1}}},
	}
	rep.finish()
	find := func(metric, what, base string) float64 {
		for _, c := range s.metric(metric).Versus {
			if c.What == what && c.Baseline == base {
				return c.Ratio
			}
		}
		return 0
	}
	procs := "bare Raft, 3 processes, stamp → applied, followers at 1,000 msgs/s"
	if got := find("publish → delivery, other nodes", "p50", procs); got != 3 {
		t.Errorf("delivery p50 vs 3 processes: %v, want 3", got)
	}
	if got := find("publish → delivery, other nodes", "p99", procs); got != 5 {
		t.Errorf("delivery p99 vs 3 processes: %v, want 5", got)
	}
	if got := find("publish → delivery, other nodes", "p50", "bare Raft stamp → applied, followers at 1,000 msgs/s"); got != 6 {
		t.Errorf("delivery p50 vs in-process: %v, want 6", got)
	}
	if got := find("publish → 202 (commit)", "p50", "bare Raft, 3 processes, commit at 1,000 msgs/s, 1 msgs/entry"); got != 1 {
		t.Errorf("commit p50 vs 3 processes: %v, want 1", got)
	}
	var b strings.Builder
	rep.print(&b)
	for _, want := range []string{
		"bare Raft commit at 1,000 msgs/s, 1 msgs/entry",
		"bare Raft, 3 processes, commit at 1,000 msgs/s, 1 msgs/entry commit p50 4.00",
		"raft1 20  raft2 10  raft3 10  bench 1",
		"p50 3.00× " + procs + " (3.00 ms)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	j, err := json.Marshal(rep.Baselines.Raft)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(j), `"processes":3`) != 1 {
		t.Errorf("JSON: %s", j)
	}
}

// TestPacedProcs runs a short paced phase on three member processes (this
// test binary, through TestMain) and checks that every member timed every
// entry and that the processes and their dir are gone after stop.
func TestPacedProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three member processes")
	}
	ctx := context.Background()
	c, err := newBareRaftProcs()
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop(t.Logf)
	if err := startBareRaftProcs(ctx, c); err != nil {
		for _, n := range c.nodes {
			t.Logf("%s: %s", n.id, tailFile(n.logPath, 2000))
		}
		t.Fatal(err)
	}
	rb, err := pacedProcs(ctx, c, 1, 200, 200, 400*time.Millisecond, &counter{})
	if err != nil {
		t.Fatal(err)
	}
	n := rb.Commit.Count
	if n == 0 || rb.Processes != 3 {
		t.Fatalf("commits %d, processes %d", n, rb.Processes)
	}
	leader, ok1 := rb.delay("stamp → applied, leader")
	followers, ok2 := rb.delay("stamp → applied, followers")
	if !ok1 || !ok2 || leader.Count != n || followers.Count != 2*n {
		t.Errorf("commits %d; leader %+v, followers %+v: want %d and %d applies", n, leader, followers, n, 2*n)
	}
	if rb.Leader != "raft1" {
		t.Errorf("leader %q, want raft1 (the bootstrapping member)", rb.Leader)
	}
	var names []string
	for _, u := range rb.Usage {
		names = append(names, u.Name)
	}
	if !slices.Equal(names[:4], []string{"raft1", "raft2", "raft3", "bench"}) {
		t.Errorf("usage of %q", names)
	}
	// A second phase: the recording is that phase's alone.
	rb2, err := pacedProcs(ctx, c, 2, 100, 200, 200*time.Millisecond, &counter{})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := rb2.delay("stamp → applied, leader"); !ok || l.Count != rb2.Commit.Count {
		t.Errorf("second phase: leader %+v for %d commits", l, rb2.Commit.Count)
	}
	c.stop(t.Logf)
	for _, m := range c.nodes {
		if !m.dead() {
			t.Errorf("%s (pid %d) still running after stop", m.id, m.pid())
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", c.dir, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(c.dir, "*")); len(matches) > 0 {
		t.Errorf("files left: %q", matches)
	}
}

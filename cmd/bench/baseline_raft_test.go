package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a bare Raft member process, as
// the benchmark binary does (raftprocs.go).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bareMemberCmd {
		os.Exit(runBareRaftMember(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestStampEntry(t *testing.T) {
	rec := &stampRecording{tag: 7}
	data := make([]byte, 200)
	at := time.Unix(0, 1700000000123456789)
	stampEntry(data, rec.tag, at)
	if st, ok := rec.stampOf(data); !ok || st != at.UnixNano() {
		t.Errorf("stampOf = %d, %v; want %d", st, ok, at.UnixNano())
	}
	if _, ok := (&stampRecording{tag: 9}).stampOf(data); ok {
		t.Error("another phase's tag accepted")
	}
	throughput := make([]byte, 200)
	for i := range throughput {
		throughput[i] = byte('a' + i%26)
	}
	if _, ok := rec.stampOf(throughput); ok {
		t.Error("a throughput entry accepted")
	}
	if _, ok := rec.stampOf(data[:15]); ok {
		t.Error("a short entry accepted")
	}
}

func TestFinishComparesStampDelays(t *testing.T) {
	s := &scenarioResult{Name: "broadcast"}
	s.lat("publish → 202 (commit)", latency{Count: 10, P50MS: 4, P99MS: 8})
	s.lat("publish → delivery, other nodes", latency{Count: 10, P50MS: 9, P99MS: 30})
	s.lat("stamp → applied, leader", latency{Count: 10, P50MS: 3, P99MS: 6, Interpolated: true})
	s.lat("stamp → applied, followers", latency{Count: 10, P50MS: 6, P99MS: 20, Interpolated: true})
	rep := &report{Scenarios: []*scenarioResult{s}}
	rep.Baselines.Raft = []raftBaseline{{For: "broadcast", Rate: 1000, MsgsPerEntry: 1,
		Commit: latency{Count: 10, P50MS: 2, P99MS: 4},
		Delays: []namedLatency{
			{Name: "stamp → applied, leader", Latency: latency{Count: 10, P50MS: 1.5, P99MS: 3}},
			{Name: "stamp → applied, followers", Latency: latency{Count: 20, P50MS: 3, P99MS: 5}},
		}}}
	rep.finish()
	ratio := func(metric, what string) (float64, string) {
		for _, c := range s.metric(metric).Versus {
			if c.What == what {
				return c.Ratio, c.Baseline
			}
		}
		return 0, ""
	}
	for _, tt := range []struct {
		metric, what, base string
		want               float64
	}{
		{"publish → 202 (commit)", "p50", "commit", 2},
		{"stamp → applied, leader", "p50", "stamp → applied, leader", 2},
		{"stamp → applied, leader", "p99", "stamp → applied, leader", 2},
		{"stamp → applied, followers", "p50", "stamp → applied, followers", 2},
		{"stamp → applied, followers", "p99", "stamp → applied, followers", 4},
		{"publish → delivery, other nodes", "p50", "stamp → applied, followers", 3},
		{"publish → delivery, other nodes", "p99", "stamp → applied, followers", 6},
	} {
		got, base := ratio(tt.metric, tt.what)
		if got != tt.want || !strings.Contains(base, tt.base) {
			t.Errorf("%s %s: %v× %q, want %v× of the baseline's %s", tt.metric, tt.what, got, base, tt.want, tt.base)
		}
	}
	var b strings.Builder
	rep.print(&b)
	for _, want := range []string{"      stamp → applied, leader", "      stamp → applied, followers", "p50 2.00× bare Raft stamp → applied, followers at 1,000 msgs/s (3.00 ms)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	j, err := json.Marshal(rep.Baselines.Raft[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"delays":[{"name":"stamp → applied, leader"`) {
		t.Errorf("JSON lacks the delays: %s", j)
	}
}

// checkPaced checks a short paced phase on a real bare cluster: every
// member timed every entry, the leader's once each, and stopped timing.
func checkPaced(t *testing.T, bc *bareCluster) {
	t.Helper()
	ctx := context.Background()
	rb, err := bc.paced(ctx, 1, 200, 200, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	n := rb.Commit.Count
	if n == 0 {
		t.Fatal("nothing committed")
	}
	leader, ok1 := rb.delay("stamp → applied, leader")
	followers, ok2 := rb.delay("stamp → applied, followers")
	if !ok1 || !ok2 || leader.Count != n || followers.Count != 2*n {
		t.Errorf("commits %d; leader %+v, followers %+v: want %d and %d applies", n, leader, followers, n, 2*n)
	}
	if leader.MaxMS > rb.Commit.MaxMS+1 {
		t.Errorf("leader's stamp → applied max %v ms beyond the commit's %v ms", leader.MaxMS, rb.Commit.MaxMS)
	}
	li, err := bc.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Leader != bc.members[li].name() {
		t.Errorf("leader %q, want %q", rb.Leader, bc.members[li].name())
	}
	for _, m := range bc.members {
		r, err := m.call(ctx, memberRequest{Op: "stats"})
		if err != nil || r.Stats.Tag != 0 {
			t.Errorf("%s: stats %+v, %v: want the recording off after the phase", m.name(), r.Stats, err)
		}
	}
	if _, err := bc.members[li].call(ctx, memberRequest{Op: "paced", PerEntry: 1, Size: 200, Rate: 100, Duration: time.Millisecond}); err == nil {
		t.Error("a paced load without a recording: no error")
	}
}

// TestPacedStampDelays runs a short paced phase on three members in this
// process, after a throughput phase whose entries are not timed.
func TestPacedStampDelays(t *testing.T) {
	ctx := context.Background()
	bc, err := startBareRaft(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.stop()
	rb, err := bc.throughput(ctx, 1, 200, 4, 100*time.Millisecond, &counter{})
	if err != nil || rb.Commit.Count == 0 || rb.MsgsPerSec <= 0 {
		t.Fatalf("throughput %+v, %v: want entries committed", rb, err)
	}
	checkPaced(t, bc)
}

// TestPacedProcs runs the same phase on three member processes (this
// test binary re-executed), driven over their stdin and stdout.
func TestPacedProcs(t *testing.T) {
	bc, _, err := startBareRaftProcs(context.Background())
	if bc != nil {
		t.Cleanup(bc.stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range bc.members {
		if m.pid() == 0 || m.pid() == os.Getpid() {
			t.Fatalf("%s runs in this process (pid %d)", m.name(), m.pid())
		}
	}
	checkPaced(t, bc)
	if _, err := bc.members[0].call(context.Background(), memberRequest{Op: "nonsense"}); err == nil || !strings.Contains(err.Error(), "unknown op") {
		t.Errorf("an unknown request: %v, want an error naming it", err)
	}
	bc.stop()
	for _, m := range bc.members {
		select {
		case <-m.(*procMember).exited:
		default:
			t.Errorf("%s still runs after stop", m.name())
		}
	}
}

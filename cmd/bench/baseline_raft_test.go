package main

import (
	"context"
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
	data := make([]byte, 200)
	at := time.Unix(0, 1700000000123456789)
	stampEntry(data, at)
	if st, ok := stampOf(data); !ok || st != at.UnixNano() {
		t.Errorf("stampOf = %d, %v; want %d", st, ok, at.UnixNano())
	}
	throughput := make([]byte, 200)
	for i := range throughput {
		throughput[i] = byte('a' + i%26)
	}
	if _, ok := stampOf(throughput); ok {
		t.Error("a throughput entry accepted")
	}
	if _, ok := stampOf(data[:15]); ok {
		t.Error("a short entry accepted")
	}
}

// checkPaced checks a short paced phase on a real bare cluster: every
// member timed every entry, the leader's once each.
func checkPaced(t *testing.T, bc *bareCluster) {
	t.Helper()
	ctx := context.Background()
	r, err := bc.paced(ctx, 1, 200, 200, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	commit := r.metric("commit").Latency
	n := commit.Count
	leader, followers := r.metric("stamp → applied, leader").Latency, r.metric("stamp → applied, followers").Latency
	if n == 0 || leader.Count != n || followers.Count != 2*n {
		t.Errorf("commits %d; leader %+v, followers %+v: want %d and %d applies", n, leader, followers, n, 2*n)
	}
	if leader.MaxMS > commit.MaxMS+1 {
		t.Errorf("leader's stamp → applied max %v ms beyond the commit's %v ms", leader.MaxMS, commit.MaxMS)
	}
	li, err := bc.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "(leader: " + bc.members[li].name() + ","; len(r.Notes) != 1 || !strings.Contains(r.Notes[0], want) {
		t.Errorf("notes %q, want one naming the leader %q", r.Notes, want)
	}
	if _, err := bc.members[(li+1)%3].call(ctx, memberRequest{Op: "paced", PerEntry: 1, Size: 200, Rate: 100, Duration: time.Millisecond}); err == nil {
		t.Error("a paced load on a follower: no error")
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
	r, err := bc.throughput(ctx, 1, 200, 4, 100*time.Millisecond, &counter{})
	if err != nil || r.metric("commit").Latency.Count == 0 || r.metric("committed messages/s").Value <= 0 {
		t.Fatalf("throughput %+v, %v: want entries committed", r, err)
	}
	checkPaced(t, bc)
}

// TestPacedProcs runs the same phase on three member processes (this
// test binary re-executed), driven over their stdin and stdout.
func TestPacedProcs(t *testing.T) {
	bc, err := startBareRaftProcs(context.Background())
	if bc != nil {
		t.Cleanup(bc.stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range bc.members {
		if m.Pid() == 0 || m.Pid() == os.Getpid() {
			t.Fatalf("%s runs in this process (pid %d)", m.name(), m.Pid())
		}
	}
	checkPaced(t, bc)
	if _, err := bc.members[0].call(context.Background(), memberRequest{Op: "nonsense"}); err == nil || !strings.Contains(err.Error(), "unknown op") {
		t.Errorf("an unknown request: %v, want an error naming it", err)
	}
	bc.stop()
	for _, m := range bc.members {
		select {
		case <-m.(*procMember).Exited():
		default:
			t.Errorf("%s still runs after stop", m.name())
		}
	}
}

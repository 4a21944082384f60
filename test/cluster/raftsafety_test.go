package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRaftSafetyEmptyLogStoreRefusesToStart: a follower whose raft.db was
// truncated to 0 bytes while it was stopped holds snapshots but has lost
// its log and its term. Started from those files it would vote with a log
// it lost (issue 12: acknowledged messages were then overwritten), so the
// process must refuse to start: exit non-zero with an error that names the
// file and the recovery, and change nothing. The cluster keeps every
// acknowledged message meanwhile; the documented recovery (wipe its data
// directory, start it with -join) brings it back, and it catches up. On the way, a state store (the fsm's state.db) full of
// garbage is shown to be harmless: it is rebuilt from the snapshot and the
// log at every start.
func TestRaftSafetyEmptyLogStoreRefusesToStart(t *testing.T) {
	opts := nodeOptions{SnapshotThreshold: 64, TrailingLogs: 16, SnapshotInterval: time.Second, WriteTimeout: 3 * time.Second}
	nodes := startCluster(t, 3, opts)
	const hub = "safety"
	leader := waitMembers(t, 10*time.Second, nodes...)
	victim := without(nodes, leader)[1]
	survivors := without(nodes, victim)

	pub := newPublisher(nodes, hub)
	publishN := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			pub.publishOne(fmt.Sprintf("%s-%d", prefix, i), i)
		}
		if len(pub.failed) > 0 || len(pub.errs) > 0 {
			t.Fatalf("publishing %s: failed %v, errors %v", prefix, pub.failed, pub.errs)
		}
	}
	// agree waits until every node of ns serves the same sequence, and
	// checks it against everything acknowledged so far.
	agree := func(what string, ns ...*node) []streamMessage {
		t.Helper()
		var ref []streamMessage
		waitFor(t, 30*time.Second, what, func() (bool, string) {
			got, same, why := sameSequence(ns, hub)
			if !same {
				return false, why
			}
			ref = got
			return len(ref) >= len(pub.acked), fmt.Sprintf("%d served, %d acknowledged", len(ref), len(pub.acked))
		})
		pub.check(t, what, ref)
		return ref
	}

	publishN("before", 200)
	snapshot(t, victim) // the victim holds snapshots and a compacted log
	agree("all three nodes to serve the first 200 messages", nodes...)

	// A state store full of garbage: the node deletes and rebuilds it.
	victim.stop()
	stateDB := filepath.Join(victim.dataDir, "state", "state.db")
	if err := os.WriteFile(stateDB, []byte(strings.Repeat("not a bbolt file ", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	restart(t, victim)
	agree("the victim to rebuild its state store and serve every message", nodes...)

	// The log store cut to 0 bytes.
	victim.stop()
	raftDir := filepath.Join(victim.dataDir, "raft")
	raftDB := filepath.Join(raftDir, "raft.db")
	snaps, err := filepath.Glob(filepath.Join(raftDir, "snapshots", "*", "state.bin"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("the victim has no snapshot to restart from (%v, %v): the test needs one", snaps, err)
	}
	if err := os.Truncate(raftDB, 0); err != nil {
		t.Fatal(err)
	}
	before := dirListing(t, raftDir)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, victim.args(victim.httpAddr, victim.raftAddr)...)
	cmd.Env = childEnv()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(victim.logs, "==== %s: started on a truncated raft.db:\n%s", time.Now().Format(time.StampMilli), out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 || ctx.Err() != nil {
		t.Fatalf("started on an empty raft.db: %v after %s, want a non-zero exit; output:\n%s", err, time.Since(start).Round(time.Millisecond), out)
	}
	msg := string(out)
	t.Logf("refused to start in %s, exit code %d: %s", time.Since(start).Round(time.Millisecond), exit.ExitCode(), strings.TrimSpace(msg))
	for _, want := range []string{raftDB, "wipe", "join", "Damaged or lost files"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not mention %q; output:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
		t.Errorf("the refusal panicked; output:\n%s", msg)
	}
	if after := dirListing(t, raftDir); after != before {
		t.Errorf("the refused start changed the Raft directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The two others hold every acknowledged message, and keep committing.
	publishN("while-refused", 50)
	agree("the survivors to serve every acknowledged message", survivors...)

	// The documented recovery: wipe its data directory and start it with
	// -join. It is still a member, so the leader sends it a snapshot and
	// the log.
	if err := os.RemoveAll(victim.dataDir); err != nil {
		t.Fatal(err)
	}
	restart(t, victim) // its command line has -join
	waitMembers(t, 30*time.Second, nodes...)
	publishN("after-rejoin", 20)
	agree("the re-joined member to catch up with every acknowledged message", nodes...)
}

// dirListing lists dir's files with their sizes, one per line.
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%s %d %v\n", rel, info.Size(), info.IsDir())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

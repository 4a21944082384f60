package node

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeLoopbackPort returns a loopback address with a port that was free a
// moment ago (a seeded member needs its Raft address before it starts).
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// pollAll reads a hub's whole retained history on a node.
func pollAll(t *testing.T, n *testNode, hub string) string {
	t.Helper()
	res := doHTTP(t, http.MethodGet, n.url("/v1/hubs/"+hub+"/poll?after=0&limit=1000&timeout=0"), nil, nil)
	if res.status != http.StatusOK {
		t.Fatalf("poll %s on %s: status %d: %s", hub, n.ID(), res.status, res.body)
	}
	return string(res.body)
}

// A backup taken from a ready member seeds a new cluster that holds the
// same messages at the same indexes (so readers' cursors stay valid),
// accepts new writes after them, and takes new members.
func TestBackupSeedsANewCluster(t *testing.T) {
	old := startCluster(t, clusterOptions{})
	leader := old.waitLeader()
	var last uint64
	for i := range 40 {
		last = leader.publish(t, "chat", "m", fmt.Sprintf(`["msg-%d"]`, i), nil)
	}
	source := old.followers()[0]
	waitFor(t, 10*time.Second, "the follower to be ready with every message", func() (bool, string) {
		r := source.notReady()
		return r == "" && source.fsm.LastMessage() == last, r
	})
	res := doHTTP(t, http.MethodGet, source.url("/admin/backup"), nil, nil)
	if res.status != http.StatusOK {
		t.Fatalf("backup: status %d: %.300s", res.status, res.body)
	}
	if got := res.header.Get(backupLastMessageHeader); got != fmt.Sprint(last) {
		t.Fatalf("backup last message header %q, want %d", got, last)
	}
	file := filepath.Join(t.TempDir(), "cluster.backup")
	if err := os.WriteFile(file, res.body, 0o600); err != nil {
		t.Fatal(err)
	}
	want := pollAll(t, source, "chat")

	seeded := &testCluster{t: t}
	seed := seeded.start(Config{
		ID: "seed1", DataDir: filepath.Join(t.TempDir(), "seed1"), HTTPAddr: "127.0.0.1:0",
		RaftAddr: freeLoopbackPort(t), RestoreFrom: file,
		WriteTimeout: 3 * time.Second, JoinTimeout: 20 * time.Second, Logger: testLogger(t),
	})
	seeded.nodes = append(seeded.nodes, seed)
	seeded.waitLeader()
	waitFor(t, 10*time.Second, "the seeded node to be ready", func() (bool, string) {
		r := seed.notReady()
		return r == "", r
	})
	if got := pollAll(t, seed, "chat"); got != want {
		t.Fatalf("the seeded cluster's history differs:\n got %.400s\nwant %.400s", got, want)
	}
	if next := seed.publish(t, "chat", "m", `["after restore"]`, nil); next != last+1 {
		t.Fatalf("first publish after the restore got index %d, want %d", next, last+1)
	}
	joiner := seeded.start(Config{
		ID: "seed2", DataDir: filepath.Join(t.TempDir(), "seed2"), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: []string{seed.HTTPAddr()}, WriteTimeout: 3 * time.Second, JoinTimeout: 20 * time.Second, Logger: testLogger(t),
	})
	seeded.nodes = append(seeded.nodes, joiner)
	seeded.waitMembers(2)
	waitFor(t, 20*time.Second, "the new member to hold the restored history", func() (bool, string) {
		if joiner.notReady() != "" {
			return false, joiner.notReady()
		}
		got := pollAll(t, joiner, "chat")
		return strings.Contains(got, "msg-0") && strings.Contains(got, "after restore"), got
	})

	// Restarting the seeded node with -restore still set keeps its state.
	seed.stop()
	again := seeded.start(Config{
		ID: "seed1", DataDir: seed.cfg.DataDir, HTTPAddr: seed.HTTPAddr(), RaftAddr: seed.RaftAddr(),
		RestoreFrom: file, WriteTimeout: 3 * time.Second, Logger: testLogger(t),
	})
	waitFor(t, 20*time.Second, "the restarted seed to hold what came after the restore", func() (bool, string) {
		if again.notReady() != "" {
			return false, again.notReady()
		}
		return strings.Contains(pollAll(t, again, "chat"), "after restore"), ""
	})
}

// A damaged or foreign backup is refused before anything is written.
func TestRestoreRefusesADamagedBackup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.backup")
	if err := os.WriteFile(file, []byte("BPSNAP\x00\x01 this is not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "n")
	_, err := New(Config{ID: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: freeLoopbackPort(t), RestoreFrom: file, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "restore from") {
		t.Fatalf("New with a damaged backup: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "raft", "snapshots")); len(entries) > 0 {
		t.Fatalf("a damaged backup left snapshots behind: %v", entries)
	}
}

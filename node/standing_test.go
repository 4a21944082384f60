package node

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/raftlog"
)

// A leader that removed itself has shut its Raft down: a publish to it is
// answered at once with "not a member", not after the write timeout with
// "the write may have been committed".
func TestRemovedLeaderSaysItIsNotAMember(t *testing.T) {
	const writeTimeout = 20 * time.Second
	c := startCluster(t, clusterOptions{tweak: func(cfg *Config) { cfg.WriteTimeout = writeTimeout }})
	leader := c.waitLeader()
	res := doHTTP(t, http.MethodPost, leader.url("/admin/remove"), []byte(`{"id":"`+leader.ID()+`"}`), nil)
	if res.status != http.StatusOK {
		t.Fatalf("remove the leader itself: status %d: %s", res.status, res.body)
	}
	waitFor(t, 10*time.Second, "the removed leader's Raft to stop", func() (bool, string) {
		s := leader.raft.Standing()
		return s == raftlog.StandingShutdown, s.String()
	})

	start := time.Now()
	res = doHTTP(t, http.MethodPost, leader.url("/api/v1/hubs/chat"), []byte(`{"target":"m","arguments":[1]}`), nil)
	elapsed := time.Since(start)
	if res.status != http.StatusServiceUnavailable || !strings.Contains(string(res.body), "not a member") {
		t.Fatalf("publish to the removed leader: status %d: %s", res.status, res.body)
	}
	if strings.Contains(string(res.body), "may have been committed") {
		t.Fatalf("a node that committed nothing says the write may have been committed: %s", res.body)
	}
	if elapsed >= writeTimeout/2 {
		t.Fatalf("the removed leader answered after %s; it knows at once that it is not a member", elapsed)
	}
	// The rest of the cluster goes on.
	var next *testNode
	waitFor(t, 10*time.Second, "a new leader among the others", func() (bool, string) {
		for _, n := range c.nodes {
			if n != leader && n.raft.IsLeader() {
				next = n
				return true, ""
			}
		}
		return false, "none yet"
	})
	next.publish(t, "chat", "m", "[2]", nil)
}

// A follower that was removed keeps its Raft running but is out of the
// configuration: it too answers at once.
func TestRemovedFollowerSaysItIsNotAMember(t *testing.T) {
	const writeTimeout = 20 * time.Second
	c := startCluster(t, clusterOptions{tweak: func(cfg *Config) { cfg.WriteTimeout = writeTimeout }})
	leader := c.waitLeader()
	gone := c.followers()[0]
	res := doHTTP(t, http.MethodPost, leader.url("/admin/remove"), []byte(`{"id":"`+gone.ID()+`"}`), nil)
	if res.status != http.StatusOK {
		t.Fatalf("remove %s: status %d: %s", gone.ID(), res.status, res.body)
	}
	waitFor(t, 10*time.Second, "the follower to learn it was removed", func() (bool, string) {
		s := gone.raft.Standing()
		return s == raftlog.StandingRemoved || s == raftlog.StandingShutdown, s.String()
	})
	start := time.Now()
	res = doHTTP(t, http.MethodPost, gone.url("/api/v1/hubs/chat"), []byte(`{"target":"m","arguments":[1]}`), nil)
	elapsed := time.Since(start)
	if res.status != http.StatusServiceUnavailable || !strings.Contains(string(res.body), "not a member") {
		t.Fatalf("publish to the removed follower: status %d: %s", res.status, res.body)
	}
	if elapsed >= writeTimeout/2 {
		t.Fatalf("the removed follower answered after %s", elapsed)
	}
}

// When the leader cannot write its Raft log because its disk is full, the
// publish answers 507 with Retry-After and commits nothing; the cluster
// goes on under another leader. It needs root to mount a small tmpfs over
// node1's Raft folder.
func TestFullDiskAnswers507(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to mount a tmpfs for the full-disk case")
	}
	base := t.TempDir()
	raftDir := filepath.Join(base, "node1", "raft")
	if err := os.MkdirAll(raftDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", raftDir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", raftDir).Run() })

	c := startCluster(t, clusterOptions{tweak: func(cfg *Config) {
		if cfg.ID == "node1" {
			cfg.DataDir = filepath.Join(base, "node1")
		}
	}})
	leader := c.waitLeader()
	if leader.ID() != "node1" {
		t.Fatalf("leader is %s, want node1 (the first node bootstraps)", leader.ID())
	}
	leader.publish(t, "chat", "m", `["before"]`, nil)

	filler := filepath.Join(raftDir, "filler")
	fillDisk(t, filler)
	t.Cleanup(func() { _ = os.Remove(filler) })
	pad := strings.Repeat("x", 32<<10)
	var refused string
	var last httpResult
	for i := 0; refused == "" && i < 200; i++ {
		marker := fmt.Sprintf("full-%d", i)
		last = doHTTP(t, http.MethodPost, leader.url("/api/v1/hubs/chat"), []byte(`{"target":"m","arguments":["`+marker+`","`+pad+`"]}`), nil)
		switch last.status {
		case http.StatusInsufficientStorage:
			refused = marker
		case http.StatusAccepted:
		default:
			t.Fatalf("publish %d to the leader with a full disk: status %d: %s", i, last.status, last.body)
		}
	}
	if refused == "" {
		t.Fatalf("200 publishes of 32 KB to a leader whose disk is full were all accepted")
	}
	if last.header.Get("Retry-After") == "" || !strings.Contains(string(last.body), "disk is full") {
		t.Fatalf("507 without Retry-After or a clear word: %v %s", last.header, last.body)
	}

	// The others elect a leader and go on; the refused publish is nowhere.
	var other *testNode
	waitFor(t, 20*time.Second, "a publish through node2 to commit", func() (bool, string) {
		for _, n := range c.nodes {
			if n.ID() != "node1" && n.raft.IsLeader() {
				other = n
			}
		}
		res := doHTTP(t, http.MethodPost, c.nodes[1].url("/api/v1/hubs/chat"), []byte(`{"target":"m","arguments":["after"]}`), nil)
		return res.status == http.StatusAccepted && other != nil, fmt.Sprintf("status %d: %s", res.status, res.body)
	})
	res := doHTTP(t, http.MethodGet, other.url("/v1/hubs/chat/poll?after=0&limit=1000&timeout=0"), nil, nil)
	if res.status != http.StatusOK || !strings.Contains(string(res.body), "before") || !strings.Contains(string(res.body), "after") {
		t.Fatalf("read the log on %s: status %d: %.300s", other.ID(), res.status, res.body)
	}
	if strings.Contains(string(res.body), `"`+refused+`"`) {
		t.Fatalf("the publish answered 507 (%s) was committed", refused)
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// testFullDisk puts one follower's Raft folder (<data>/raft: raft.db and
// snapshots) on a 20 MB tmpfs, fills it while publishing goes on, keeps it
// full for a while, then frees the space. The follower must catch up by
// itself, without a leader change, within a deadline; the leader and the
// other follower go on meanwhile. It needs root to mount the tmpfs.
func testFullDisk(t *testing.T, p plan) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED (chaos full disk): mounting a tmpfs over a node's raft folder needs root; run the suite as root (CI does) to test a full disk")
	}
	var raftDir string
	c := newCluster(t, 3, clusterOptions{beforeStart: func(n *node) {
		if n.id != "n3" {
			return
		}
		raftDir = filepath.Join(n.dataDir, "raft")
		if err := os.MkdirAll(raftDir, 0o750); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", raftDir).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED (chaos full disk): mount a tmpfs over %s: %v: %s", raftDir, err, out)
		}
		t.Cleanup(func() {
			n.stop() // before the mount goes
			if out, err := exec.Command("umount", raftDir).CombinedOutput(); err != nil {
				t.Errorf("clean up: umount %s: %v: %s", raftDir, err, out)
				_ = exec.Command("umount", "-l", raftDir).Run()
			}
		})
	}})
	victim := c.nodes[2]
	leader := c.leader(20 * time.Second)
	if leader == victim {
		t.Fatalf("%s leads; the scenario needs it to be a follower (n1 bootstraps and leads a fresh cluster)", victim)
	}
	before, err := status(leader)
	if err != nil {
		t.Fatal(err)
	}
	r := startLoad(c, "chaos", p.rate, p.diskPad)
	r.waitAcks(p.rate/2, 30*time.Second, "before the disk fills")

	filler := filepath.Join(raftDir, "filler")
	mark := victim.logs.Len()
	free := fill(t, filler)
	t0 := time.Now()
	testkit.WaitFor(t, 60*time.Second, victim.id+" to fail a write of its Raft log (no space left on device)", func() (bool, string) {
		return strings.Contains(victim.logs.Since(mark), "no space left on device"), "no ENOSPC in its output yet"
	})
	failedAfter := time.Since(t0)
	full := time.Now()
	r.runFor(p.diskFull, "while "+victim.id+"'s disk is full")
	lst, err := status(leader)
	if err != nil {
		t.Fatal(err)
	}
	vst, err := status(victim)
	if err != nil {
		t.Fatal(err)
	}
	if vst.AppliedIndex >= lst.CommitIndex {
		t.Fatalf("%s kept up (applied %d, the leader committed %d) although its disk was full for %s: the scenario did not stall it",
			victim, vst.AppliedIndex, lst.CommitIndex, time.Since(full).Round(time.Second))
	}
	keptFull := time.Since(full)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var caughtUp time.Duration
	testkit.WaitFor(t, 30*time.Second, victim.id+" to catch up once space is freed", func() (bool, string) {
		st, err := status(victim)
		if err != nil {
			return false, err.Error()
		}
		if ok, why := ready(victim); !ok || st.AppliedIndex < lst.CommitIndex {
			return false, fmt.Sprintf("applied %d, the leader had committed %d when space was freed; %s", st.AppliedIndex, lst.CommitIndex, why)
		}
		caughtUp = time.Since(freed)
		return true, ""
	})
	after, err := status(leader)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "Leader" || after.Term != before.Term {
		t.Errorf("leadership changed while %s's disk was full: %s was leader in term %d, now %s in term %d", victim, leader, before.Term, after.State, after.Term)
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the disk was freed")
	r.finish()
	r.figures(fmt.Sprintf("20 MB tmpfs under %s/raft filled (%d bytes of filler), first failed log write after %s, kept full %s (%d Raft entries behind when freed), caught up %s after space was freed, leader %s term %d throughout",
		victim, free, failedAfter.Round(10*time.Millisecond), keptFull.Round(100*time.Millisecond), lst.CommitIndex-vst.AppliedIndex,
		caughtUp.Round(10*time.Millisecond), leader, before.Term))
}

// fill writes path until the file system is full and returns how much it
// wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

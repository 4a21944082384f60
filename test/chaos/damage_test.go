package chaos

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// damage is one way a stopped node's files (or its port) can be broken.
type damage struct {
	name string
	// prepare runs while the node still runs (e.g. take snapshots).
	prepare func(t *testing.T, r *run, n *node)
	// apply breaks the stopped node and returns a function that undoes
	// what is not a file (nil if nothing).
	apply func(t *testing.T, n *node) (undo func())
	// want is what n's error must say.
	want func(n *node) []string
	// wipe: the recovery is to wipe the data directory and join again.
	wipe bool
}

var damages = []damage{
	{
		name:  "raft.db truncated to 0",
		apply: func(t *testing.T, n *node) func() { truncate(t, n, func(int64) int64 { return 0 }); return nil },
		want:  func(*node) []string { return []string{"raft.db", "is empty", "wipe its data directory"} },
		wipe:  true,
	},
	{
		// Half of what bbolt wrote (its high-water mark), not of the file:
		// bbolt grows its file ahead of use, so half the file may hold
		// every page in use, and a node that lost nothing rightly starts.
		name: "raft.db cut in half",
		apply: func(t *testing.T, n *node) func() {
			truncate(t, n, func(int64) int64 { return boltHighWater(t, n) / 2 })
			return nil
		},
		want: func(*node) []string { return []string{"raft.db", "damaged", "wipe its data directory"} },
		wipe: true,
	},
	{
		name:    "both snapshots corrupt",
		prepare: takeTwoSnapshots,
		apply:   corruptSnapshots,
		want:    func(*node) []string { return []string{"snapshot", "damaged", "wipe its data directory"} },
		wipe:    true,
	},
	{
		name:  "Raft port in use",
		apply: occupyRaftPort,
		want:  func(n *node) []string { return []string{"listen on " + n.raftAddr, "address already in use"} },
	},
}

// testDamagedFiles stops a follower, damages its files (or takes its Raft
// port), and starts it: it must exit non-zero with a clear error that
// names the problem and no panic. Then it is wiped and joins again (or
// simply restarts once the port is free) and must catch up; nothing
// acknowledged may be lost.
func testDamagedFiles(t *testing.T, p plan) {
	c := newCluster(t, 3, clusterOptions{})
	r := startLoad(c, "chaos", p.rate, p.pad)
	var catchUps []time.Duration
	for i, d := range damages {
		r.waitAcks(p.rate/2, 30*time.Second, "before: "+d.name)
		leader := c.leader(20 * time.Second)
		victim := c.followers(leader)[i%2]
		if d.prepare != nil {
			d.prepare(t, r, victim)
		}
		victim.stop()
		undo := d.apply(t, victim)
		mark := victim.logs.Len()
		victim.spawn()
		select {
		case <-victim.proc.Exited():
		case <-time.After(15 * time.Second):
			victim.kill9()
			t.Fatalf("%s: %s kept running with its damage for 15 s; its output:\n%s", d.name, victim, victim.logs.Since(mark))
		}
		out, exit := victim.logs.Since(mark), fmt.Sprint(victim.proc.Err())
		if victim.proc.Err() == nil {
			t.Errorf("%s: %s exited with status 0, want non-zero", d.name, victim)
		}
		if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
			t.Errorf("%s: %s panicked instead of a clear error:\n%s", d.name, victim, tail(out, 8<<10))
		}
		for _, w := range d.want(victim) {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %s's error does not say %q:\n%s", d.name, victim, w, tail(out, 8<<10))
			}
		}
		if undo != nil {
			undo()
		}
		if d.wipe {
			victim.wipe(httpAddrs(c.followers(victim)))
		}
		catchUps = append(catchUps, c.startUntilHealthy(victim))
		t.Logf("%s: %s refused to start (%s: %s) and was ready %s after its recovery", d.name, victim, exit, lastLine(out, "backplane: "),
			catchUps[len(catchUps)-1].Round(10*time.Millisecond))
	}
	r.waitAcks(p.rate/2, 30*time.Second, "after the last damage")
	r.finish()
	r.figures(fmt.Sprintf("%d damaged nodes refused to start with a clear error; recovered node ready after %s", len(damages), spread(catchUps)))
}

// lastLine is the last line of out that starts with prefix.
func lastLine(out, prefix string) string {
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			line = l
		}
	}
	return line
}

// truncate cuts n's raft.db to size(current size).
func truncate(t *testing.T, n *node, size func(int64) int64) {
	t.Helper()
	path := filepath.Join(n.dataDir, "raft", "raft.db")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size(st.Size())); err != nil {
		t.Fatal(err)
	}
}

// boltHighWater is the end of the pages n's raft.db uses: the high-water
// page id times the page size, the larger of bbolt's two meta pages' (page
// header 16 bytes; meta: magic, version, page size, flags, root bucket 16
// bytes, freelist page id, high-water page id, ...).
func boltHighWater(t *testing.T, n *node) int64 {
	t.Helper()
	path := filepath.Join(n.dataDir, "raft", "raft.db")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 64)
	var pageSize, high int64
	for i := range int64(2) {
		if _, err := f.ReadAt(head, i*pageSize); err != nil {
			t.Fatalf("read %s meta page %d: %v", path, i, err)
		}
		if binary.LittleEndian.Uint32(head[16:20]) != 0xED0CDAED {
			t.Fatalf("%s: meta page %d has no bbolt magic", path, i)
		}
		pageSize = int64(binary.LittleEndian.Uint32(head[24:28]))
		high = max(high, int64(binary.LittleEndian.Uint64(head[56:64])))
	}
	return high * pageSize
}

// snapshotDirs lists n's snapshot directories.
func snapshotDirs(n *node) ([]string, error) {
	return filepath.Glob(filepath.Join(n.dataDir, "raft", "snapshots", "*", "state.bin"))
}

// takeTwoSnapshots has n take snapshots (POST /admin/snapshot) until it
// holds two (hashicorp/raft keeps the two newest), with publishes between.
func takeTwoSnapshots(t *testing.T, r *run, n *node) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, n.id+" to hold two snapshots", func() (bool, string) {
		if files, err := snapshotDirs(n); err != nil || len(files) >= 2 {
			return err == nil, fmt.Sprint(err)
		}
		r.waitAcks(10, 30*time.Second, "between snapshots")
		code, _, body, err := get(n.ctl, http.MethodPost, n.url("/admin/snapshot"), nil, adminHeader())
		return false, fmt.Sprintf("POST /admin/snapshot: %d %s %v", code, body, err)
	})
}

// corruptSnapshots overwrites bytes in the middle of every snapshot's
// state.bin of n.
func corruptSnapshots(t *testing.T, n *node) func() {
	t.Helper()
	files, err := snapshotDirs(n)
	if err != nil || len(files) < 2 {
		t.Fatalf("%s's snapshots: %v %v, want two", n, files, err)
	}
	for _, path := range files {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err == nil {
			_, err = f.WriteAt([]byte(strings.Repeat("\xa5", 64)), st.Size()/2)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("corrupt %s: %v", path, err)
		}
	}
	return nil
}

// occupyRaftPort listens on n's Raft address (loopback) until undone.
func occupyRaftPort(t *testing.T, n *node) func() {
	t.Helper()
	ln, err := net.Listen("tcp", n.raftAddr)
	if err != nil {
		t.Fatalf("take %s's Raft port %s: %v", n, n.raftAddr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return func() { _ = ln.Close() }
}

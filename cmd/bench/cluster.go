package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/backplane/backplane/node"
)

// benchNode is one node of the local cluster under test.
type benchNode struct {
	id      string
	url     string // http://host:port
	dataDir string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// pid is the node's process id.
func (n *benchNode) pid() int { return n.cmd.Process.Pid }

// dead reports whether the node's process has exited (the storm scenario
// kills one).
func (n *benchNode) dead() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// cluster is the three nodes the benchmark drives: backplane processes on
// 127.0.0.1 with their data in a temp dir.
type cluster struct {
	nodes    []*benchNode
	dir      string // removed by stop
	http     *http.Client
	stopOnce sync.Once
}

// benchNodeArgs lift the per-client limits on the benchmark's nodes: the
// benchmark opens thousands of connections from loopback and sends from
// one connection far faster than -invocation-rate allows.
var benchNodeArgs = []string{"-invocation-rate", "-1", "-max-connections-per-address", "-1", "-max-groups-per-connection", "-1"}

// startLocalCluster builds the binary if needed and starts three nodes on
// 127.0.0.1 with kernel-picked ports (nodes 2 and 3 join node 1), data
// under a new temp dir; nodeArgs come last and win.
func startLocalCluster(ctx context.Context, binary string, nodeArgs []string, logf func(string, ...any)) (c *cluster, err error) {
	dir, err := os.MkdirTemp("", "backplane-bench-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	c = &cluster{dir: dir, http: newHTTPClient(64)}
	defer func() {
		if err != nil {
			c.stop(logf)
		}
	}()
	if binary == "" {
		binary = filepath.Join(dir, "backplane")
		if err := buildBinary(ctx, binary); err != nil {
			return c, err
		}
		logf("built ./cmd/node into %s", binary)
	}
	for i := 1; i <= 3; i++ {
		n := &benchNode{id: fmt.Sprintf("node%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i))}
		n.logPath = n.dataDir + ".log"
		args := []string{"-id", n.id, "-data", n.dataDir, "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-log-level", "warn"}
		if i > 1 {
			args = append(args, "-join", c.nodes[0].url)
		}
		if err := c.launch(ctx, binary, n, append(append(args, benchNodeArgs...), nodeArgs...)); err != nil {
			return c, err
		}
	}
	return c, c.waitReady(ctx, 60*time.Second)
}

func buildBinary(ctx context.Context, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	if g := strings.TrimSpace(string(gomod)); g == "" || g == os.DevNull {
		return errors.New("go env GOMOD: not inside the backplane module; pass -binary")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/node")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/node: %w\n%s", err, b)
	}
	return nil
}

// launch starts binary with args as node n, adds it to c.nodes and waits
// for the addresses.json it writes into n.dataDir.
func (c *cluster) launch(ctx context.Context, binary string, n *benchNode, args []string) error {
	if err := os.MkdirAll(n.dataDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", n.dataDir, err)
	}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		return fmt.Errorf("create node log: %w", err)
	}
	n.cmd = exec.Command(binary, args...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// Own process group: a terminal's Ctrl-C reaches only the benchmark,
	// which stops the nodes in order. Pdeathsig ends them if the
	// benchmark itself is killed.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	n.exited = make(chan struct{})
	go func() {
		_ = n.cmd.Wait()
		logFile.Close()
		close(n.exited)
	}()
	c.nodes = append(c.nodes, n)
	path := filepath.Join(n.dataDir, "addresses.json")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(path); err == nil {
			var a struct {
				HTTPAddr string `json:"http_addr"`
			}
			if json.Unmarshal(b, &a) == nil && a.HTTPAddr != "" {
				n.url = "http://" + a.HTTPAddr
				return nil
			}
		}
		select {
		case <-n.exited:
			return fmt.Errorf("%s exited at start: %s", n.id, tailFile(n.logPath, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s wrote no %s within 30s", n.id, path)
		}
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// waitReady waits until every node answers /readyz with 200 and reports
// as many members as there are nodes.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		last = nil
		for _, n := range c.nodes {
			st, err := c.status(ctx, n)
			if err == nil && len(st.Members) < len(c.nodes) {
				err = fmt.Errorf("%s sees %d members, want %d", n.id, len(st.Members), len(c.nodes))
			}
			if err == nil {
				_, err = c.get(ctx, n.url+"/readyz")
			}
			if err != nil {
				last = err
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster not ready within %s: %w", timeout, last)
}

// get sends a GET and returns the body of a 200 answer.
func (c *cluster) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// status reads a node's /admin/status.
func (c *cluster) status(ctx context.Context, n *benchNode) (node.Status, error) {
	var st node.Status
	b, err := c.get(ctx, n.url+"/admin/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s/admin/status: %w", n.url, err)
	}
	return st, nil
}

// leader returns the index in c.nodes of the current leader, asking the
// nodes that are still running.
func (c *cluster) leader(ctx context.Context) (int, error) {
	for _, n := range c.nodes {
		if n.dead() {
			continue
		}
		st, err := c.status(ctx, n)
		if err != nil {
			return -1, err
		}
		for j, m := range c.nodes {
			if (st.State == "Leader" && m == n) || (st.Leader.HTTPAddr != "" && m.url == "http://"+st.Leader.HTTPAddr) {
				return j, nil
			}
		}
	}
	return -1, errors.New("no node reports a leader")
}

// settle waits until no SignalR connection is recorded in the cluster and
// every node has applied the leader's commit index, so the next phase
// starts from a quiet cluster.
func (c *cluster) settle(ctx context.Context, timeout time.Duration) error {
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		quiet := true
		var commit uint64
		for _, n := range c.nodes {
			if n.dead() {
				continue
			}
			st, err := c.status(ctx, n)
			if err != nil {
				return err
			}
			if k := st.Connections["cluster_signalr"]; k > 0 {
				quiet, last = false, fmt.Sprintf("%s still records %d SignalR connections", n.id, k)
			}
			commit = max(commit, st.CommitIndex)
			if st.AppliedIndex < commit {
				quiet, last = false, fmt.Sprintf("%s applied %d < commit %d", n.id, st.AppliedIndex, commit)
			}
		}
		if quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster did not settle within %s: %s", timeout, last)
}

// logTotals reads the leader's last message index and last Raft index.
func (c *cluster) logTotals(ctx context.Context) (messages, entries uint64, err error) {
	li, err := c.leader(ctx)
	if err != nil {
		return 0, 0, err
	}
	st, err := c.status(ctx, c.nodes[li])
	if err != nil {
		return 0, 0, err
	}
	return st.Messages.LastMessage, st.LastIndex, nil
}

// procs lists the nodes' processes, for a usage meter.
func (c *cluster) procs() []proc {
	out := make([]proc, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = proc{name: n.id, pid: n.pid()}
	}
	return out
}

// disk measures each running node's data directory against the messages
// committed so far.
func (c *cluster) disk(ctx context.Context) ([]diskUsage, error) {
	var out []diskUsage
	for _, n := range c.nodes {
		if n.dead() {
			continue // killed by the storm scenario
		}
		st, err := c.status(ctx, n)
		if err != nil {
			return nil, err
		}
		raftDir := filepath.Join(n.dataDir, "raft")
		d := diskUsage{Node: n.id, LogBytes: dirBytes(filepath.Join(raftDir, "raft.db")),
			SnapBytes:  dirBytes(filepath.Join(raftDir, "snapshots")),
			StateBytes: dirBytes(filepath.Join(n.dataDir, "state")), Messages: st.Messages.LastMessage}
		if d.Messages > 0 {
			d.PerMessage = float64(d.LogBytes+d.SnapBytes+d.StateBytes) / float64(d.Messages)
		}
		out = append(out, d)
	}
	return out, nil
}

// killNode ends node i with SIGKILL, as a crash would, and waits up to
// 10 s for its process to exit; stop passes over it afterwards.
func (c *cluster) killNode(i int) error {
	n := c.nodes[i]
	if err := n.cmd.Process.Kill(); err != nil && !n.dead() {
		return fmt.Errorf("kill %s: %w", n.id, err)
	}
	select {
	case <-n.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit within 10s of SIGKILL", n.id, n.pid())
	}
}

// stop ends every node (SIGTERM, then SIGKILL after 10 s) and removes the
// temp dir. Safe to call more than once.
func (c *cluster) stop(logf func(string, ...any)) {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			if n.dead() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = n.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-n.exited:
				case <-time.After(10 * time.Second):
					logf("%s did not stop within 10s of SIGTERM: killing it", n.id)
					_ = n.cmd.Process.Kill()
					<-n.exited
				}
			}()
		}
		wg.Wait()
		if err := os.RemoveAll(c.dir); err != nil {
			logf("remove %s: %v", c.dir, err)
		}
	})
}

// kill ends every node at once with SIGKILL (second Ctrl-C) and removes
// the temp dir.
func (c *cluster) kill() {
	for _, n := range c.nodes {
		_ = n.cmd.Process.Kill()
	}
	for _, n := range c.nodes {
		select {
		case <-n.exited:
		case <-time.After(2 * time.Second):
		}
	}
	_ = os.RemoveAll(c.dir)
}

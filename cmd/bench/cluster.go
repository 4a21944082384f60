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

	childproc "github.com/backplane/backplane/internal/proc"
	"github.com/backplane/backplane/node"
)

// child is a process the benchmark started, with its output in a log file:
// in its own process group, so that a terminal's Ctrl-C reaches only the
// benchmark, which stops it in order, and killed if the benchmark dies
// (Pdeathsig).
type child struct {
	*childproc.Process
	logPath string
}

// startChild starts cmd; its stderr (and its stdout, unless set) go to a
// new file at logPath.
func startChild(cmd *exec.Cmd, logPath string) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The child writes into its own copy of the file's descriptor.
	defer logFile.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p, err := childproc.Start(cmd, logFile)
	if err != nil {
		return nil, err
	}
	return &child{Process: p, logPath: logPath}, nil
}

// logTail is the end of the log.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	return strings.TrimSpace(childproc.Tail(string(b), 2000))
}

// benchNode is one node of the cluster under test.
type benchNode struct {
	*child
	id      string
	url     string // http://host:port
	dataDir string
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
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/node")
		if out, err := cmd.CombinedOutput(); err != nil {
			return c, fmt.Errorf("go build ./cmd/node (run the benchmark in the module's directory, or pass -binary): %w\n%s", err, out)
		}
		logf("built ./cmd/node into %s", binary)
	}
	for i := 1; i <= 3; i++ {
		n := &benchNode{id: fmt.Sprintf("node%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i))}
		args := []string{"-id", n.id, "-data", n.dataDir, "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-log-level", "warn"}
		if i > 1 {
			args = append(args, "-join", c.nodes[0].url)
		}
		if n.child, err = startChild(exec.Command(binary, append(append(args, benchNodeArgs...), nodeArgs...)...), n.dataDir+".log"); err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
		// The node writes its bound addresses into addresses.json.
		if err := poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, string) {
			a, err := node.ReadAddresses(n.dataDir)
			if err == nil && a.HTTPAddr != "" {
				n.url = "http://" + a.HTTPAddr
				return true, ""
			}
			return !n.Running(), fmt.Sprintf("no addresses.json (%v)", err)
		}); err != nil || !n.Running() {
			return c, fmt.Errorf("%s did not start: %v: %s", n.id, err, n.logTail())
		}
	}
	err = poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, string) {
		for _, n := range c.nodes {
			st, err := c.status(ctx, n)
			if err == nil && len(st.Members) < len(c.nodes) {
				err = fmt.Errorf("%s sees %d members, want %d", n.id, len(st.Members), len(c.nodes))
			}
			if err == nil {
				_, err = c.get(ctx, n.url+"/readyz")
			}
			if err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
	if err != nil {
		return c, fmt.Errorf("cluster not ready: %w", err)
	}
	return c, nil
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
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return b, nil
}

// status reads a node's /admin/status.
func (c *cluster) status(ctx context.Context, n *benchNode) (node.Status, error) {
	var st node.Status
	b, err := c.get(ctx, n.url+"/admin/status")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		return st, fmt.Errorf("%s status: %w", n.id, err)
	}
	return st, nil
}

// leader returns the index in c.nodes of the current leader, asking the
// nodes that are still running.
func (c *cluster) leader(ctx context.Context) (int, error) {
	for _, n := range c.nodes {
		if !n.Running() {
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
	return poll(ctx, timeout, 100*time.Millisecond, func() (bool, string) {
		var commit uint64
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			st, err := c.status(ctx, n)
			if err != nil {
				return false, err.Error()
			}
			if k := st.Connections["cluster_signalr"]; k > 0 {
				return false, fmt.Sprintf("%s still records %d SignalR connections", n.id, k)
			}
			if commit = max(commit, st.CommitIndex); st.AppliedIndex < commit {
				return false, fmt.Sprintf("%s applied %d < commit %d", n.id, st.AppliedIndex, commit)
			}
		}
		return true, ""
	})
}

// logTotals reads the leader's last message index and last Raft index.
func (c *cluster) logTotals(ctx context.Context) (messages, entries uint64, err error) {
	li, err := c.leader(ctx)
	if err != nil {
		return 0, 0, err
	}
	st, err := c.status(ctx, c.nodes[li])
	return st.Messages.LastMessage, st.LastIndex, err
}

// procs lists the nodes' processes, for a usage meter.
func (c *cluster) procs() []proc {
	out := make([]proc, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = proc{name: n.id, pid: n.Pid()}
	}
	return out
}

// disk measures each running node's data directory against the messages
// committed so far.
func (c *cluster) disk(ctx context.Context) ([]diskUsage, error) {
	var out []diskUsage
	for _, n := range c.nodes {
		if !n.Running() {
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

// stop ends every node (SIGTERM, then SIGKILL after 10 s) and removes the
// temp dir. Safe to call more than once.
func (c *cluster) stop(logf func(string, ...any)) {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			wg.Go(func() {
				if n.Running() && n.Stop(syscall.SIGTERM, 10*time.Second) {
					logf("%s did not stop within 10s of SIGTERM: killed it", n.id)
				}
			})
		}
		wg.Wait()
		if err := os.RemoveAll(c.dir); err != nil {
			logf("remove %s: %v", c.dir, err)
		}
	})
}

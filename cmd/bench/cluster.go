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
)

// benchNode is one node of the cluster under test: its base URL and, for
// a local cluster, its process.
type benchNode struct {
	id      string
	url     string // http://host:port
	dataDir string // local only
	logPath string // local only
	cmd     *exec.Cmd
	exited  chan struct{}
}

// pid is the node's process id, 0 for a remote node.
func (n *benchNode) pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// dead reports whether the node is a local process that has exited (the
// storm scenario kills one).
func (n *benchNode) dead() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// cluster is the three (or more) nodes the benchmark drives.
type cluster struct {
	nodes      []*benchNode
	dir        string // temp dir of a local cluster, removed by stop
	binary     string
	adminToken string
	http       *http.Client

	stopOnce sync.Once
}

// nodeStatus is the part of GET /admin/status the benchmark reads.
type nodeStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID string `json:"id"`
	} `json:"members"`
	Connections map[string]int `json:"connections"`
	Messages    struct {
		LastMessage    uint64 `json:"last_message"`
		StoreFileBytes int64  `json:"store_file_bytes"`
	} `json:"messages"`
	HTTPAddr string `json:"http_addr"`
}

// startLocalCluster builds the binary if needed and starts three nodes on
// 127.0.0.1 with kernel-picked ports, data under a new temp dir.
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
	c.binary = binary
	for i := 1; i <= 3; i++ {
		n := &benchNode{id: fmt.Sprintf("node%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i))}
		n.logPath = n.dataDir + ".log"
		var join []string
		if i > 1 {
			join = []string{"-join", c.nodes[0].url}
		}
		args := append(append(join, benchNodeArgs...), nodeArgs...) // -node-args come last and win
		if err := c.launch(ctx, n, nodeLaunchArgs(n, args)); err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.waitReady(ctx, 60*time.Second); err != nil {
		return c, err
	}
	return c, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the backplane module; pass -binary")
	}
	return filepath.Dir(gomod), nil
}

func buildBinary(ctx context.Context, out string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/node")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/node: %w\n%s", err, b)
	}
	return nil
}

// benchNodeArgs lift the per-client limits on the benchmark's nodes: the
// benchmark opens thousands of connections from loopback and sends from
// one connection far faster than -invocation-rate allows.
var benchNodeArgs = []string{"-invocation-rate", "-1", "-max-connections-per-address", "-1", "-max-groups-per-connection", "-1"}

// nodeLaunchArgs is the command line of a local node: its id, data dir,
// loopback addresses on free ports, then extra.
func nodeLaunchArgs(n *benchNode, extra []string) []string {
	return append([]string{"-id", n.id, "-data", n.dataDir, "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-log-level", "warn"}, extra...)
}

// launch starts c.binary with args as node n and waits for the
// addresses.json it writes into n.dataDir. Nodes and bare Raft member
// processes (baseline_raft_procs.go) start this way.
func (c *cluster) launch(ctx context.Context, n *benchNode, args []string) error {
	if err := os.MkdirAll(n.dataDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", n.dataDir, err)
	}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		return fmt.Errorf("create node log: %w", err)
	}
	n.cmd = exec.Command(c.binary, args...)
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
	path := filepath.Join(n.dataDir, "addresses.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
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

// remoteCluster targets existing nodes.
func remoteCluster(ctx context.Context, targets []string, adminToken string) (*cluster, error) {
	c := &cluster{adminToken: adminToken, http: newHTTPClient(64)}
	for i, t := range targets {
		t = strings.TrimRight(strings.TrimSpace(t), "/")
		if !strings.Contains(t, "://") {
			t = "http://" + t
		}
		c.nodes = append(c.nodes, &benchNode{id: fmt.Sprintf("target%d", i+1), url: t})
	}
	if len(c.nodes) == 0 {
		return nil, errors.New("-targets lists no node")
	}
	return c, c.waitReady(ctx, 30*time.Second)
}

// waitReady waits until every node answers /readyz with 200 and reports
// as many members as there are nodes, then names the nodes by their ids.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = nil
		for _, n := range c.nodes {
			st, err := c.status(ctx, n)
			if err == nil && len(st.Members) < len(c.nodes) {
				err = fmt.Errorf("%s sees %d members, want %d", n.url, len(st.Members), len(c.nodes))
			}
			if err == nil {
				err = c.ready(ctx, n)
			}
			if err == nil && st.ID != "" {
				n.id = st.ID
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

func (c *cluster) ready(ctx context.Context, n *benchNode) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s/readyz: %w", n.url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %d %s", n.url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// get sends an admin GET and returns the body.
func (c *cluster) get(ctx context.Context, url string) ([]byte, error) {
	return c.do(ctx, c.http, http.MethodGet, url)
}

// do sends a bodiless request (with the admin token, if any) and returns
// the body of a 200 answer.
func (c *cluster) do(ctx context.Context, client *http.Client, method, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if c.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// status reads a node's /admin/status.
func (c *cluster) status(ctx context.Context, n *benchNode) (nodeStatus, error) {
	var st nodeStatus
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
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
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
			if st.Connections["cluster_signalr"] > 0 {
				quiet, last = false, fmt.Sprintf("%s still records %d SignalR connections", n.id, st.Connections["cluster_signalr"])
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

// logTotals sums the message and Raft indexes over the cluster: the
// leader's last message index and last Raft index.
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

// killNode ends node i with SIGKILL, as a crash would, and waits up to
// 10 s for its process to exit. stop and kill pass over it afterwards;
// its data stays in the temp dir until stop removes it.
func (c *cluster) killNode(i int) error {
	n := c.nodes[i]
	if n.pid() == 0 {
		return fmt.Errorf("%s is not a local process", n.id)
	}
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

// stop ends every local node (SIGTERM, then SIGKILL after 10 s) and
// removes the temp dir. A node that already exited (killNode) is passed
// over. Safe to call more than once.
func (c *cluster) stop(logf func(string, ...any)) {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			if n.pid() == 0 || n.dead() {
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
		if c.dir != "" {
			if err := os.RemoveAll(c.dir); err != nil {
				logf("remove %s: %v", c.dir, err)
			}
		}
	})
}

// kill ends every local node at once with SIGKILL (second Ctrl-C).
func (c *cluster) kill() {
	for _, n := range c.nodes {
		if n.pid() != 0 && !n.dead() {
			_ = n.cmd.Process.Kill()
		}
	}
	if c.dir != "" {
		for _, n := range c.nodes {
			if n.exited != nil {
				select {
				case <-n.exited:
				case <-time.After(2 * time.Second):
				}
			}
		}
		_ = os.RemoveAll(c.dir)
	}
}

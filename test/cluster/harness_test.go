// Package cluster runs real backplane processes on 127.0.0.1 and checks the
// cluster-level guarantees from the outside: membership, replication,
// failover, resume across nodes, retention resets and bad input.
//
// TestMain builds the binary once; startNode runs it with its data in a
// per-test temporary directory and learns its bound addresses from
// <data>/addresses.json. A node's stderr is kept in memory and printed only
// when the test fails.
package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/proc"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/internal/testpki"
	bpnode "github.com/backplane/backplane/node"
)

// binaryPath is the backplane binary built by TestMain.
var binaryPath string

// clusterCA signs the member certificates of nodes started with PeerTLS;
// clusterCAFile holds its certificate. The harness's HTTP clients trust it.
var (
	clusterCA     *testpki.CA
	clusterCAFile string
)

func TestMain(m *testing.M) {
	os.Exit(testkit.RunWithNode(m, &binaryPath, makeClusterCA))
}

// makeClusterCA makes the CA that signs member certificates, writes its
// certificate into dir and has the harness's clients trust it.
func makeClusterCA(dir string) error {
	var err error
	if clusterCA, err = testpki.NewCA("backplane test cluster CA"); err != nil {
		return err
	}
	clusterCAFile = filepath.Join(dir, "cluster-ca.pem")
	if err := clusterCA.WriteCA(clusterCAFile); err != nil {
		return err
	}
	trustClusterCA()
	return nil
}

// Listen addresses for a fresh node: loopback, port picked by the kernel.
// (TestBothListenersOnPortZero checks the binary accepts both on port 0.)
const (
	defaultHTTPListen = "127.0.0.1:0"
	defaultRaftListen = "127.0.0.1:0"
)

// nodeOptions configures one node process. Zero values keep the binary's
// defaults.
type nodeOptions struct {
	ID string
	// Join lists HTTP addresses (host:port) of members to join through.
	Join []string
	// AdminToken is passed as -admin-token and used by the harness for
	// admin calls to this node.
	AdminToken string
	// RetainMessages is -retain-messages (0: the binary's default).
	RetainMessages int
	// SnapshotThreshold, TrailingLogs and SnapshotInterval tune log
	// compaction (0: the binary's defaults).
	SnapshotThreshold int
	TrailingLogs      int
	SnapshotInterval  time.Duration
	// WriteTimeout is -write-timeout (0: the binary's default).
	WriteTimeout time.Duration
	// HTTPListen and RaftListen override the listen addresses.
	HTTPListen string
	RaftListen string
	// PeerTLS gives the node a member certificate signed by clusterCA and
	// turns on mutual TLS between members (its HTTP port serves HTTPS).
	PeerTLS bool
	// ClientTLS gives the node -tls-cert and -tls-key (a certificate of
	// clusterCA named client-<id>): its HTTP port serves HTTPS.
	ClientTLS bool
	// ClusterKey is -cluster-key.
	ClusterKey string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// node is one backplane process (and its restarts).
type node struct {
	t       *testing.T
	opts    nodeOptions
	id      string
	dataDir string
	// httpAddr and raftAddr are the bound addresses from addresses.json;
	// they stay the same across restarts.
	httpAddr string
	raftAddr string
	// logs holds the stderr of every run of this node, in order, with a
	// line where each starts and ends.
	logs *syncBuffer
	// proc is the current run; only the test goroutine changes it.
	proc *proc.Process
}

func (n *node) String() string { return n.id }

// baseURL is http(s)://<http addr>.
func (n *node) baseURL() string { return n.scheme() + "://" + n.httpAddr }

// scheme is https for a node whose HTTP port serves TLS.
func (n *node) scheme() string {
	if n.opts.PeerTLS || n.opts.ClientTLS {
		return "https"
	}
	return "http"
}

// running reports whether the current process is alive.
func (n *node) running() bool { return n.proc != nil && n.proc.Running() }

// startNode starts a fresh node with its data in a new temporary directory
// and waits until it has written addresses.json. The process is stopped when
// the test ends.
func startNode(t *testing.T, opts nodeOptions) *node {
	t.Helper()
	if opts.ID == "" {
		opts.ID = "node1"
	}
	if opts.HTTPListen == "" {
		opts.HTTPListen = defaultHTTPListen
	}
	if opts.RaftListen == "" {
		opts.RaftListen = defaultRaftListen
	}
	n := &node{
		t:       t,
		opts:    opts,
		id:      opts.ID,
		dataDir: filepath.Join(t.TempDir(), opts.ID),
		logs:    &syncBuffer{},
	}
	t.Cleanup(func() {
		if t.Failed() && n.running() {
			t.Logf("---- %s when the test failed ----\n%s", n.id, n.diagnostics())
		}
		n.stop()
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", n.id, proc.Tail(n.logs.String(), 256<<10))
		}
	})
	n.launch(opts.HTTPListen, opts.RaftListen)
	return n
}

// diagnostics is what a failed test shows of a running node besides its
// log: its /admin/status and every goroutine's stack, so that a rare hang
// can be read after the fact.
func (n *node) diagnostics() string {
	var b strings.Builder
	for _, path := range []string{"/admin/status", "/debug/pprof/goroutine?debug=2"} {
		res, err := do(http.MethodGet, n.baseURL()+path, nil, n.adminHeader())
		body := string(res.Body)
		if len(body) > 192<<10 {
			body = body[:192<<10] + "\n…(cut)"
		}
		fmt.Fprintf(&b, "== GET %s: %d %v\n%s\n", path, res.Status, err, body)
	}
	return b.String()
}

// args is the command line for one run.
func (n *node) args(httpListen, raftListen string) []string {
	o := n.opts
	args := []string{"-id", o.ID, "-data", n.dataDir, "-http", httpListen, "-raft", raftListen, "-log-level", "info"}
	if len(o.Join) > 0 {
		args = append(args, "-join", strings.Join(o.Join, ","))
	}
	if o.AdminToken != "" {
		args = append(args, "-admin-token", o.AdminToken)
	}
	if o.RetainMessages > 0 {
		args = append(args, "-retain-messages", strconv.Itoa(o.RetainMessages))
	}
	if o.SnapshotThreshold > 0 {
		args = append(args, "-snapshot-threshold", strconv.Itoa(o.SnapshotThreshold))
	}
	if o.TrailingLogs > 0 {
		args = append(args, "-trailing-logs", strconv.Itoa(o.TrailingLogs))
	}
	if o.SnapshotInterval > 0 {
		args = append(args, "-snapshot-interval", o.SnapshotInterval.String())
	}
	if o.WriteTimeout > 0 {
		args = append(args, "-write-timeout", o.WriteTimeout.String())
	}
	if o.PeerTLS {
		f := n.memberCert()
		args = append(args, "-peer-tls-cert", f.Cert, "-peer-tls-key", f.Key, "-peer-tls-ca", clusterCAFile)
	}
	if o.ClientTLS {
		f := n.clientCert()
		args = append(args, "-tls-cert", f.Cert, "-tls-key", f.Key)
	}
	if o.ClusterKey != "" {
		args = append(args, "-cluster-key", o.ClusterKey)
	}
	return append(args, o.ExtraArgs...)
}

// memberCert writes (once) the node's member certificate, beside its data.
func (n *node) memberCert() testpki.Files { return n.certFile(n.id) }

// clientCert writes (once) the node's certificate for clients.
func (n *node) clientCert() testpki.Files { return n.certFile("client-" + n.id) }

func (n *node) certFile(cn string) testpki.Files {
	dir := filepath.Dir(n.dataDir)
	f := testpki.Files{Cert: filepath.Join(dir, cn+".crt"), Key: filepath.Join(dir, cn+".key")}
	if _, err := os.Stat(f.Cert); err == nil {
		return f
	}
	f, err := clusterCA.WriteCert(dir, cn)
	if err != nil {
		n.t.Fatal(err)
	}
	return f
}

// launch starts one run and waits for addresses.json.
func (n *node) launch(httpListen, raftListen string) {
	t := n.t
	t.Helper()
	addrFile := filepath.Join(n.dataDir, bpnode.AddressesFile)
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: remove stale %s: %v", n.id, addrFile, err)
	}
	cmd := exec.Command(binaryPath, n.args(httpListen, raftListen)...)
	cmd.Env = childEnv()
	p, err := proc.StartLogged(cmd, n.logs)
	if err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
	n.proc = p

	var got fsm.NodeInfo
	waitFor(t, 15*time.Second, n.id+" to write addresses.json", func() (bool, string) {
		a, err := bpnode.ReadAddresses(n.dataDir)
		if err == nil {
			got = a
			return true, ""
		}
		if !p.Running() {
			t.Fatalf("%s exited (%s) instead of listening and writing addresses.json; its output:\n%s", n.id, p.ExitText(), proc.Tail(n.logs.String(), 16<<10))
		}
		return false, err.Error()
	})
	if got.ID != n.id || got.HTTPAddr == "" || got.RaftAddr == "" {
		t.Fatalf("%s: addresses.json = %+v, want id %q and both addresses", n.id, got, n.id)
	}
	if n.httpAddr != "" && (got.HTTPAddr != n.httpAddr || got.RaftAddr != n.raftAddr) {
		t.Fatalf("%s restarted on http %s raft %s, want the previous http %s raft %s",
			n.id, got.HTTPAddr, got.RaftAddr, n.httpAddr, n.raftAddr)
	}
	if n.httpAddr == "" {
		// Set once, at the first start: later runs keep the addresses, so
		// goroutines that reach the node while it restarts read them safely.
		n.httpAddr, n.raftAddr = got.HTTPAddr, got.RaftAddr
	}
}

// childEnv is the test's environment without BACKPLANE_* settings, so the
// command line alone configures the nodes.
var childEnv = proc.ChildEnv

// stop ends the current run: SIGTERM, then SIGKILL after a deadline.
func (n *node) stop() {
	if !n.running() {
		return
	}
	if killed := n.proc.Stop(syscall.SIGTERM, 10*time.Second); killed {
		n.t.Errorf("%s did not stop within 10s of SIGTERM; killed it", n.id)
	}
}

// kill9 kills the current run with SIGKILL and waits for it to be gone.
func kill9(t *testing.T, n *node) {
	t.Helper()
	if !n.running() {
		t.Fatalf("kill9 %s: not running", n.id)
	}
	if err := n.proc.Kill(); err != nil {
		t.Fatalf("kill9 %s: %v", n.id, err)
	}
	fmt.Fprintf(n.logs, "==== %s: killed with SIGKILL\n", time.Now().Format(time.StampMilli))
}

// restart starts a stopped node again with the same data directory, the
// same ports and the same other flags.
func restart(t *testing.T, n *node) {
	t.Helper()
	if n.running() {
		t.Fatalf("restart %s: still running", n.id)
	}
	n.launch(n.httpAddr, n.raftAddr)
}

// waitFor polls cond until it reports true, and fails the test with cond's
// last explanation when timeout passes.
var waitFor = testkit.WaitFor

// waitMembers waits until every node in nodes lists exactly nodes as
// members, agrees on one leader among them (with its addresses), and is
// ready. It returns the leader.
func waitMembers(t *testing.T, timeout time.Duration, nodes ...*node) *node {
	t.Helper()
	want := expectedMembers(nodes...)
	var leader *node
	waitFor(t, timeout, fmt.Sprintf("%v to agree on members %v and a leader", nodes, want), func() (bool, string) {
		leaderID := ""
		for _, n := range nodes {
			st, err := status(n)
			if err != nil {
				return false, err.Error()
			}
			if st.ID != n.id {
				return false, fmt.Sprintf("%s: status id %q, want %q", n.id, st.ID, n.id)
			}
			if got := sortedMembers(st.Members); !slices.Equal(got, want) {
				return false, fmt.Sprintf("%s: members %+v, want %+v", n.id, got, want)
			}
			if st.Leader.ID == "" {
				return false, fmt.Sprintf("%s: no leader", n.id)
			}
			if leaderID == "" {
				leaderID = st.Leader.ID
			} else if st.Leader.ID != leaderID {
				return false, fmt.Sprintf("%s: leader %q, another node says %q", n.id, st.Leader.ID, leaderID)
			}
			if ok, why := ready(n); !ok {
				return false, fmt.Sprintf("%s: /readyz %s", n.id, why)
			}
			if st.ClusterLevel < st.FeatureLevel {
				// The leader raises it within a second of every member
				// saying it knows the level; tests expect a settled cluster.
				return false, fmt.Sprintf("%s: cluster feature level %d, this version knows %d", n.id, st.ClusterLevel, st.FeatureLevel)
			}
		}
		leader = nil
		for _, n := range nodes {
			if n.id == leaderID {
				leader = n
			}
		}
		if leader == nil {
			return false, fmt.Sprintf("leader %q is not one of %v", leaderID, nodes)
		}
		for _, n := range nodes {
			st, err := status(n)
			if err != nil {
				return false, err.Error()
			}
			if st.Leader.ID != leader.id || st.Leader.RaftAddr != leader.raftAddr || st.Leader.HTTPAddr != leader.httpAddr {
				return false, fmt.Sprintf("%s: leader %+v, want {%s %s %s}", n.id, st.Leader, leader.id, leader.raftAddr, leader.httpAddr)
			}
		}
		return true, ""
	})
	return leader
}

// startCluster starts size nodes n1..n<size>: n1 bootstraps, the others join
// it with -join. It waits until all agree on members and leader.
func startCluster(t *testing.T, size int, opts nodeOptions) []*node {
	t.Helper()
	first := opts
	first.ID = "n1"
	first.Join = nil
	nodes := []*node{startNode(t, first)}
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(nodes[0]) })
	for i := 2; i <= size; i++ {
		o := opts
		o.ID = "n" + strconv.Itoa(i)
		o.Join = []string{nodes[0].httpAddr}
		nodes = append(nodes, startNode(t, o))
	}
	waitMembers(t, 30*time.Second, nodes...)
	return nodes
}

// syncBuffer is a buffer safe for concurrent use: the output of a process
// that the test reads while the process writes it.
type syncBuffer = testkit.Buffer

// waitLeaderAmong waits up to timeout until the first of survivors names
// one of them as the Raft leader, and returns that node. what says what
// the test waits for.
func waitLeaderAmong(t *testing.T, timeout time.Duration, what string, survivors []*node) *node {
	t.Helper()
	var leader *node
	waitFor(t, timeout, what, func() (bool, string) {
		st, err := status(survivors[0])
		if err != nil {
			return false, err.Error()
		}
		for _, n := range survivors {
			if st.Leader.ID == n.id {
				leader = n
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s says the leader is %q", survivors[0], st.Leader.ID)
	})
	return leader
}

// without returns nodes except drop, in order.
func without(nodes []*node, drop *node) []*node {
	var out []*node
	for _, n := range nodes {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}

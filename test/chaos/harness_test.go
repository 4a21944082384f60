// Package chaos is the project's own chaos suite: it runs real backplane
// processes (real Raft, real bbolt files, real sockets), hurts them the way
// production does — kill -9, whole-cluster crashes, network partitions,
// membership churn, a full disk, damaged files — while a paced publisher
// and one resuming SSE reader per node run, and then checks that every
// acknowledged message is on every node exactly once, at the index its
// acknowledgement named, with no gap and no duplicate (checker_test.go).
//
// TestMain builds the binary once. The short plan runs by default; set
// BACKPLANE_CHAOS=long for the long one (docs/operations.md, "Guarantees
// and how we test them").
package chaos

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/proc"
	"github.com/backplane/backplane/internal/testkit"
	bpnode "github.com/backplane/backplane/node"
)

// binaryPath is the backplane binary built by TestMain.
var binaryPath string

func TestMain(m *testing.M) {
	os.Exit(testkit.RunWithNode(m, &binaryPath, nil))
}

// Secrets shared by every node of a test cluster. The cluster key lets
// nodes bind the private addresses of the network namespaces
// (netns_test.go) without -insecure-cluster; the admin token lets the test
// reach /admin/* over the bridge, which is not loopback.
const (
	clusterKey = "chaos-suite-cluster-key-0123456789"
	adminToken = "chaos-suite-admin-token"
)

// node is one backplane process and its restarts.
type node struct {
	t       *testing.T
	id      string
	dataDir string
	// host is the address the node binds and advertises: 127.0.0.1, or its
	// network namespace's address.
	host string
	// place is the node's network namespace, nil on loopback.
	place *netPlace
	// httpAddr and raftAddr are the bound addresses (addresses.json); a
	// restart reuses them.
	httpAddr, raftAddr string
	// extra flags for every run; join for the next run that has no state.
	extra []string
	join  []string
	// logs holds the output of every run, printed when the test fails.
	logs *testkit.Buffer
	// ctl reaches the node even while it is cut off (through its
	// namespace); it is the plain client on loopback.
	ctl *http.Client

	// proc is the current run; only the test goroutine changes it.
	proc *proc.Process

	mu   sync.Mutex
	up   bool          // clients may use it
	gone chan struct{} // closed when it stops being up
}

func (n *node) String() string { return n.id }

// url is http://<http addr><path>.
func (n *node) url(path string) string { return "http://" + n.httpAddr + path }

// running reports whether the current process is alive.
func (n *node) running() bool { return n.proc != nil && n.proc.Running() }

// markUp tells the publisher and readers that clients may use the node.
func (n *node) markUp() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		n.up, n.gone = true, make(chan struct{})
	}
}

// markDown tells them it is gone (killed, cut off, removed): readers on it
// drop their streams, as a client behind a health-checking balancer would.
func (n *node) markDown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up {
		n.up = false
		close(n.gone)
	}
}

// liveness is whether clients may use the node, and a channel closed when
// that stops (nil while it is down).
func (n *node) liveness() (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up, n.gone
}

// args is the command line of the next run.
func (n *node) args() []string {
	httpL, raftL := n.httpAddr, n.raftAddr
	if httpL == "" {
		httpL, raftL = net.JoinHostPort(n.host, "0"), net.JoinHostPort(n.host, "0")
	}
	args := []string{"-id", n.id, "-data", n.dataDir, "-http", httpL, "-raft", raftL,
		"-cluster-key", clusterKey, "-admin-token", adminToken, "-write-timeout", "3s", "-log-level", "info"}
	if len(n.join) > 0 {
		args = append(args, "-join", strings.Join(n.join, ","))
	}
	return append(args, n.extra...)
}

// command is the process of the next run: in the node's namespace when it
// has one (ip netns exec execs the binary, so the pid is the node's).
func (n *node) command() *exec.Cmd {
	var cmd *exec.Cmd
	if n.place != nil {
		cmd = exec.Command(ipPath, append([]string{"netns", "exec", n.place.ns, binaryPath}, n.args()...)...)
	} else {
		cmd = exec.Command(binaryPath, n.args()...)
	}
	// Without BACKPLANE_* settings: the command line alone configures it.
	cmd.Env = proc.ChildEnv()
	return cmd
}

// spawn starts a run without waiting for anything.
func (n *node) spawn() {
	t := n.t
	t.Helper()
	if n.running() {
		t.Fatalf("start %s: already running", n.id)
	}
	p, err := proc.StartLogged(n.command(), n.logs)
	if err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
	n.proc = p
}

// start runs the node and waits until it has written addresses.json (it
// listens); it does not wait for readiness. The node is marked up.
func (n *node) start() {
	t := n.t
	t.Helper()
	addrFile := filepath.Join(n.dataDir, bpnode.AddressesFile)
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: remove stale %s: %v", n.id, addrFile, err)
	}
	n.spawn()
	var got fsm.NodeInfo
	testkit.WaitFor(t, 20*time.Second, n.id+" to write addresses.json", func() (bool, string) {
		a, err := bpnode.ReadAddresses(n.dataDir)
		if err == nil {
			got = a
			return true, ""
		}
		if !n.proc.Running() {
			t.Fatalf("%s exited (%v) instead of listening; its output:\n%s", n.id, n.proc.Err(), tail(n.logs.String(), 16<<10))
		}
		return false, err.Error()
	})
	if got.ID != n.id || got.HTTPAddr == "" || got.RaftAddr == "" {
		t.Fatalf("%s: addresses.json = %+v, want id %q and both addresses", n.id, got, n.id)
	}
	if n.httpAddr != "" && (got.HTTPAddr != n.httpAddr || got.RaftAddr != n.raftAddr) {
		t.Fatalf("%s restarted on http %s raft %s, want %s %s", n.id, got.HTTPAddr, got.RaftAddr, n.httpAddr, n.raftAddr)
	}
	n.httpAddr, n.raftAddr = got.HTTPAddr, got.RaftAddr
	n.markUp()
}

// kill9 kills the current run with SIGKILL and waits until it is gone.
func (n *node) kill9() {
	t := n.t
	t.Helper()
	n.markDown()
	if !n.running() {
		t.Fatalf("kill -9 %s: not running", n.id)
	}
	if err := n.proc.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", n.id, err)
	}
	fmt.Fprintf(n.logs, "==== %s: killed with SIGKILL by the test\n", stamp())
}

// stop ends the current run with SIGTERM. A node must stop within its
// shutdown timeout: after 15 s it gets SIGQUIT, so the Go runtime writes
// every goroutine's stack into its output (printed with the failure), and
// SIGKILL 5 s later.
func (n *node) stop() {
	n.markDown()
	if !n.running() {
		return
	}
	_ = n.proc.Signal(syscall.SIGTERM)
	select {
	case <-n.proc.Exited():
		return
	case <-time.After(15 * time.Second):
	}
	n.t.Errorf("%s did not stop within 15s of SIGTERM; SIGQUIT for its goroutines' stacks, then SIGKILL", n.id)
	n.proc.Stop(syscall.SIGQUIT, 5*time.Second)
}

// wipe deletes the node's data directory (the node must be stopped); the
// next start joins through join.
func (n *node) wipe(join []string) {
	t := n.t
	t.Helper()
	if n.running() {
		t.Fatalf("wipe %s: still running", n.id)
	}
	if err := os.RemoveAll(n.dataDir); err != nil {
		t.Fatalf("wipe %s: %v", n.id, err)
	}
	n.join = join
	fmt.Fprintf(n.logs, "==== %s: data directory wiped by the test; next start joins %v\n", stamp(), join)
}

// stamp is the time in the log lines the test adds to a node's output.
func stamp() string { return time.Now().Format(time.StampMilli) }

// tail is the last max bytes of s.
var tail = proc.Tail

package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

const signalrAccessKey = "cluster-test-access-key-0123456789"

// npmInstalls makes sure each Node.js test package has its node_modules,
// installing from the committed lockfile once per test binary run.
var npmInstalls sync.Map

func ensureNodeModules(t *testing.T, dir string) {
	t.Helper()
	once, _ := npmInstalls.LoadOrStore(dir, &sync.Once{})
	once.(*sync.Once).Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("%s has no node_modules (npm ci failed earlier)", dir)
	}
}

// runNode runs a Node.js script or test files in dir with env added, and
// returns the combined output; a non-zero exit fails the test with it.
func runNode(t *testing.T, dir string, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	return runNodeServingRestarts(t, dir, timeout, nil, env, args...) // a nil channel never asks
}

func moduleDir(t *testing.T, rel string) string {
	t.Helper()
	root, err := testkit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// TestOfficialSignalRClients runs the official @microsoft/signalr 10 client
// and its MessagePack protocol (test/signalr/*.test.mjs) against a
// three-node cluster: every transport and protocol with clients on
// different nodes, REST sends, a long-polling client behind a balancer
// without affinity, and automatic reconnect after a node is killed.
func TestOfficialSignalRClients(t *testing.T) {
	runSignalRSuite(t, "relay.test.mjs", "scaleout.test.mjs")
}

// runSignalRSuite runs test files of test/signalr against a three-node
// cluster (see runSuiteIn).
func runSignalRSuite(t *testing.T, files ...string) {
	t.Helper()
	runSuiteIn(t, "test/signalr", files...)
}

// TestNodeChatExample runs examples/node-chat against a two-node cluster:
// the example in the docs works as written.
func TestNodeChatExample(t *testing.T) {
	dir := moduleDir(t, "examples/node-chat")
	ensureNodeModules(t, dir)
	nodes := startCluster(t, 2, nodeOptions{})
	out := runNode(t, dir, time.Minute, []string{"BACKPLANE_NODES=" + nodes[0].baseURL() + "," + nodes[1].baseURL()}, "chat.mjs")
	for _, want := range []string{
		"[alice on " + nodes[0].baseURL() + "] bob: hi alice",
		"[bob on " + nodes[1].baseURL() + "] alice: hello from node 1",
		"committed at indexes 1 and 2",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("example output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatefulReconnectAcrossNodes runs test/signalr/stateful.test.mjs:
// the official client with withStatefulReconnect() resumes through a
// follower, with invocations in flight, and after its node is killed.
func TestStatefulReconnectAcrossNodes(t *testing.T) {
	runSignalRSuite(t, "stateful.test.mjs")
}

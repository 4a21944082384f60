package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// runSuiteIn starts a three-node cluster with an access key and runs test
// files of a folder with its own node_modules (rel, from the module root)
// with node's test runner; every test must pass and none may be skipped.
func runSuiteIn(t *testing.T, rel string, files ...string) {
	t.Helper()
	dir := moduleDir(t, rel)
	ensureNodeModules(t, dir)
	nodes := startCluster(t, 3, nodeOptions{ExtraArgs: []string{"-access-key", signalrAccessKey}})
	t.Log(runNodeSuite(t, dir, nodes, 3*time.Minute, files...))
}

// runNodeSuite runs test files of dir with node's test runner against
// nodes (their URLs, pids and the access key in the environment), fails
// the test unless every test passed and none was skipped, and returns the
// runner's output.
func runNodeSuite(t *testing.T, dir string, nodes []*node, timeout time.Duration, files ...string) string {
	t.Helper()
	var urls, pids []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
		pids = append(pids, strconv.Itoa(n.proc.Pid()))
	}
	out := runNode(t, dir, timeout, []string{
		"BACKPLANE_NODES=" + strings.Join(urls, ","),
		"BACKPLANE_PIDS=" + strings.Join(pids, ","),
		"BACKPLANE_ACCESS_KEY=" + signalrAccessKey,
	}, append([]string{"--test", "--test-reporter=spec"}, files...)...)
	for _, want := range []string{"fail 0", "skipped 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node test summary lacks %q:\n%s", want, out)
		}
	}
	return out
}

// TestFidelityASPNETClient runs test/signalr-aspnet: the ASP.NET Core 2.x
// client @aspnet/signalr 1.1.4, JSON on every transport and MessagePack on
// WebSockets and long polling, on three nodes.
func TestFidelityASPNETClient(t *testing.T) {
	runSuiteIn(t, "test/signalr-aspnet", "aspnet.test.mjs")
}

// TestFidelityOfficialClient runs test/signalr/fidelity.test.mjs and
// msgpack.test.mjs: what @microsoft/signalr 10 sees where Backplane used
// to differ from ASP.NET Core (issue 13), MessagePack values included.
func TestFidelityOfficialClient(t *testing.T) {
	runSignalRSuite(t, "fidelity.test.mjs", "msgpack.test.mjs")
}

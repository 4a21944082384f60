package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// signalr2ClusterKey is the members' shared secret; SignalR 2 connection
// and groups tokens are signed with it, so each node verifies the tokens
// the others issued.
const signalr2ClusterKey = "signalr2-test-cluster-key-0123456789"

// TestSignalR2Clients runs the ASP.NET SignalR 2 jQuery client (signalr
// 2.4.3, in jsdom; test/signalr2/relay.test.mjs and scaleout.test.mjs)
// against a three-node cluster: every transport with clients on different
// nodes in groups, relay and REST sends, an ASP.NET Core client on the same
// hub, the /signalr/hubs proxy, and clients behind a balancer without
// affinity (a long-polling client's polls alternate between nodes).
func TestSignalR2Clients(t *testing.T) {
	runSignalR2Suite(t, "relay.test.mjs", "scaleout.test.mjs")
}

// TestSignalR2Failover runs test/signalr2/failover.test.mjs: clients over
// each transport whose node is killed resume on another node with their
// messageId and receive exactly what they missed, in order.
func TestSignalR2Failover(t *testing.T) {
	runSignalR2Suite(t, "failover.test.mjs")
}

// runSignalR2Suite starts a three-node cluster with an access key and a
// cluster key and runs test files of test/signalr2 against it with node's
// test runner; every test must pass and none may be skipped. Arguments
// of the form NAME=value are added to the environment.
func runSignalR2Suite(t *testing.T, args ...string) {
	t.Helper()
	var files, env []string
	for _, a := range args {
		if strings.Contains(a, "=") {
			env = append(env, a)
		} else {
			files = append(files, a)
		}
	}
	dir := moduleDir(t, "test/signalr2")
	ensureNodeModules(t, dir)
	nodes := startCluster(t, 3, nodeOptions{
		ClusterKey: signalr2ClusterKey,
		ExtraArgs:  []string{"-access-key", signalrAccessKey},
	})
	var urls, pids []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
		pids = append(pids, strconv.Itoa(n.cmd.Process.Pid))
	}
	out := runNode(t, dir, 4*time.Minute, append(env,
		"BACKPLANE_NODES="+strings.Join(urls, ","),
		"BACKPLANE_PIDS="+strings.Join(pids, ","),
		"BACKPLANE_ACCESS_KEY="+signalrAccessKey,
	), append([]string{"--test", "--test-reporter=spec"}, files...)...)
	t.Log(out)
	for _, want := range []string{"fail 0", "skipped 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node test summary lacks %q:\n%s", want, out)
		}
	}
}

// TestSignalR2Browser runs test/signalr2/browser.test.mjs: the jQuery
// client 2.4.3 in headless Chromium (served from the npm package, through
// the /signalr/hubs proxy) on every transport across three nodes, and a
// page whose node is killed resuming with every message once, in order.
func TestSignalR2Browser(t *testing.T) {
	chromium := chromiumPath(t)
	runSignalR2Suite(t, "browser.test.mjs", "BACKPLANE_CHROMIUM="+chromium)
}

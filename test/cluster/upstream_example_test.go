package cluster

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// TestUpstreamExample builds examples/upstream, runs it on a free loopback
// port, and runs test/signalr/upstream-example.test.mjs against three nodes
// of the built binary whose -upstream is the example: Echo and Add answer
// the official client, and a stateful connection resumes on another node
// after its node is killed and keeps calling the upstream. The example's
// log shows it verified the signature of each connection's events.
func TestUpstreamExample(t *testing.T) {
	dir := moduleDir(t, "test/signalr")
	ensureNodeModules(t, dir)
	bin, err := testkit.Build(t.TempDir(), "upstream-example", "./examples/upstream")
	if err != nil {
		t.Fatal(err)
	}
	ex := exec.Command(bin, "-addr", "127.0.0.1:0", "-key", "example-secret")
	stdout, err := ex.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var exLog syncBuffer
	ex.Stderr = &exLog
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Process.Kill(); ex.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the example printed no address: %v; log:\n%s", err, exLog.String())
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "upstream listening on "))

	nodes := startCluster(t, 3, nodeOptions{ExtraArgs: []string{
		"-access-key", signalrAccessKey, "-holder-timeout", "3s",
		"-upstream", base + "/{hub}/{category}/{event}", "-upstream-key", "example-secret",
	}})
	out := runNodeSuite(t, dir, nodes, 2*time.Minute, "upstream-example.test.mjs")
	t.Log(out)
	for _, key := range []string{"plain-conn", "stateful-conn"} {
		m := regexp.MustCompile(key + ` (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the script printed no %s:\n%s", key, out)
		}
		for _, ev := range []string{"connected " + m[1] + ` {"type":10}`, "disconnected " + m[1] + ` {"type":11`} {
			waitFor(t, 20*time.Second, "the example to log "+ev, func() (bool, string) {
				return strings.Contains(exLog.String(), ev), exLog.String()
			})
		}
	}
}

package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromiumPath finds the headless Chromium the browser test drives:
// $BACKPLANE_CHROMIUM, else Debian's /usr/bin/chromium, else chromium on
// PATH. Without one the test fails in CI (CI=true, where .ci/run installs
// it); on a developer's machine that lacks it, it is skipped with the
// command that installs it, so the README's test command works anywhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("BACKPLANE_CHROMIUM"), "/usr/bin/chromium"}
	if p, err := exec.LookPath("chromium"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if info, err := os.Stat(p); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := "headless Chromium not found ($BACKPLANE_CHROMIUM, /usr/bin/chromium, chromium on PATH): " +
		"install Debian's package with `apt-get update && apt-get install -y chromium` (CI's .ci/run installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED, not run: " + msg)
	return ""
}

// TestBrowserChatAndDashboard drives the pages every node serves (package
// webui) in headless Chromium through test/browser/chat.test.mjs
// (playwright-core), on three nodes so that two keep a quorum:
//   - chat between pages on n1, n2 and n3;
//   - n2 killed: its page shows it is disconnected, misses messages, then
//     switches to n1 and resumes after the last message it saw, with
//     exactly the missed messages;
//   - n2 restarted, n3 killed and restarted: n3's page resumes by itself
//     (EventSource and Last-Event-ID) and says so, with the missed count;
//   - the dashboard on n1 lists the members and the leader, and shows a
//     killed node as down and a restarted one as up.
//
// The script kills nodes with SIGKILL by pid, and asks for restarts at a
// small control endpoint (see serveRestarts). Screenshots go to
// $BACKPLANE_SCREENSHOT_DIR when set (to look at them), else to the test's
// temporary directory.
func TestBrowserChatAndDashboard(t *testing.T) {
	chromium := chromiumPath(t)
	dir := moduleDir(t, "test/browser")
	ensureNodeModules(t, dir)
	shots := os.Getenv("BACKPLANE_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	nodes := startCluster(t, 3, nodeOptions{})
	var urls, pids []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
		pids = append(pids, strconv.Itoa(n.proc.Pid()))
	}
	control, restarts := serveRestarts(t, nodes)
	out := runNodeServingRestarts(t, dir, 3*time.Minute, restarts, []string{
		"BACKPLANE_NODES=" + strings.Join(urls, ","),
		"BACKPLANE_PIDS=" + strings.Join(pids, ","),
		"BACKPLANE_CONTROL=" + control,
		"BACKPLANE_CHROMIUM=" + chromium,
		"BACKPLANE_SCREENSHOTS=" + shots,
	}, "--test", "--test-reporter=spec", "chat.test.mjs")
	t.Log(out)
	for _, want := range []string{"pass 1", "fail 0"} {
		if !strings.Contains(out, "# "+want) && !strings.Contains(out, "ℹ "+want) {
			t.Fatalf("node test summary lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{"chat-alice.png", "chat-bob-disconnected.png", "chat-bob-resumed.png", "chat-carol-reconnected.png", "dashboard.png"} {
		if info, err := os.Stat(filepath.Join(shots, name)); err != nil || info.Size() == 0 {
			t.Fatalf("screenshot %s: %v", name, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}

// restartRequest asks the test goroutine to restart a node; done closes
// when the node is ready again.
type restartRequest struct {
	node *node
	done chan struct{}
}

// serveRestarts serves POST /restart?node=N (1-based) for the browser
// script and returns its URL. The restart itself runs on the test goroutine
// (the harness helpers call t.Fatal), in runNodeServingRestarts.
func serveRestarts(t *testing.T, nodes []*node) (string, <-chan restartRequest) {
	t.Helper()
	reqs := make(chan restartRequest)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(r.URL.Query().Get("node"))
		if r.Method != http.MethodPost || r.URL.Path != "/restart" || err != nil || i < 1 || i > len(nodes) {
			http.Error(w, "want POST /restart?node=N", http.StatusBadRequest)
			return
		}
		req := restartRequest{node: nodes[i-1], done: make(chan struct{})}
		select {
		case reqs <- req:
		case <-r.Context().Done():
			return
		}
		select {
		case <-req.done:
			_, _ = w.Write([]byte("ready\n"))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, reqs
}

// runNodeServingRestarts is runNode that also carries out the script's
// restart requests (from restarts; nil: none) while it runs.
func runNodeServingRestarts(t *testing.T, dir string, timeout time.Duration, restarts <-chan restartRequest, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case req := <-restarts:
			restart(t, req.node)
			waitFor(t, 30*time.Second, req.node.id+" ready after its restart", func() (bool, string) { return ready(req.node) })
			close(req.done)
		case err := <-exited:
			if err != nil {
				t.Fatalf("node %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
			}
			return out.String()
		}
	}
}

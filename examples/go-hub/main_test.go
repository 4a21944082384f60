package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var httpAddrRE = regexp.MustCompile(`msg="node started".* http=(127\.0\.0\.1:\d+)`)

// startProcess runs the built example and returns its HTTP address, read
// from its "node started" log line.
func startProcess(t *testing.T, bin, id string, join string) (string, *exec.Cmd) {
	t.Helper()
	args := []string{"-id", id, "-data", filepath.Join(t.TempDir(), id), "-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-insecure-cluster"}
	if join != "" {
		args = append(args, "-join", join)
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "hubs:") {
				t.Log(id, sc.Text())
			}
			if m := httpAddrRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return a, cmd
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start", id)
	}
	return "", nil
}

// waitReady polls each process's /readyz until it answers 200.
func waitReady(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		for {
			resp, err := http.Get("http://" + a + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is not ready: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// startCluster runs three processes of the built example on loopback as
// one cluster (n2 and n3 join n1) and waits until each is ready. It returns
// their HTTP addresses and processes, in that order.
func startCluster(t *testing.T, bin string) ([]string, []*exec.Cmd) {
	t.Helper()
	first, p1 := startProcess(t, bin, "n1", "")
	second, p2 := startProcess(t, bin, "n2", first)
	third, p3 := startProcess(t, bin, "n3", first)
	waitReady(t, first, second, third)
	return []string{first, second, third}, []*exec.Cmd{p1, p2, p3}
}

// clientCommand runs script, a client of the official @microsoft/signalr
// package installed in sigDir, against the processes at addrs.
func clientCommand(ctx context.Context, script, sigDir string, addrs []string) *exec.Cmd {
	urls := make([]string, len(addrs))
	for i, a := range addrs {
		urls[i] = "http://" + a
	}
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "SIGNALR_DIR="+sigDir, "NODES="+strings.Join(urls, ","))
	return cmd
}

// prepare builds the example and makes sure the official client is installed.
func prepare(t *testing.T) (bin, sigDir string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	sigDir, err := filepath.Abs("../../test/signalr")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sigDir, "node_modules", "@microsoft", "signalr")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = sigDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	bin = filepath.Join(t.TempDir(), "go-hub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin, sigDir
}

// TestStatefulResumeOnAnotherProcess: a stateful official client whose
// process is killed with SIGKILL resumes on another process under the same
// connection id, still in its room.
func TestStatefulResumeOnAnotherProcess(t *testing.T) {
	bin, sigDir := prepare(t)
	addrs, procs := startCluster(t, bin)
	victim := procs[2]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := clientCommand(ctx, "resume-client.mjs", sigDir, addrs)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "KILL" {
			_ = victim.Process.Kill()
			_, _ = stdin.Write([]byte("killed\n"))
		}
	}
	err = cmd.Wait()
	if err != nil || len(lines) == 0 || lines[len(lines)-1] != "OK" {
		t.Fatalf("resume-client.mjs: %v\n%s\n%s", err, strings.Join(lines, "\n"), stderr.String())
	}
}

// TestChatWithOfficialClient builds the example, runs three processes on
// loopback as one cluster and drives them with @microsoft/signalr:
// clients on two processes, a validated message sent to a room, a
// refused empty message, and History.
func TestChatWithOfficialClient(t *testing.T) {
	bin, sigDir := prepare(t)
	addrs, _ := startCluster(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := clientCommand(ctx, "chat-client.mjs", sigDir, addrs)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("chat-client.mjs: %v\n%s", err, out)
	}
}

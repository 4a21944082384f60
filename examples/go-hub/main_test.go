package main

import (
	"bufio"
	"context"
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
func startProcess(t *testing.T, bin, id string, join string) string {
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
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start", id)
	}
	return ""
}

// TestChatWithOfficialClient builds the example, runs three processes on
// loopback as one cluster and drives them with @microsoft/signalr:
// clients on two processes, a validated message sent to a room, a
// refused empty message, and History.
func TestChatWithOfficialClient(t *testing.T) {
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
	bin := filepath.Join(t.TempDir(), "go-hub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	first := startProcess(t, bin, "n1", "")
	second := startProcess(t, bin, "n2", first)
	third := startProcess(t, bin, "n3", first)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "chat-client.mjs")
	cmd.Env = append(os.Environ(), "SIGNALR_DIR="+sigDir, "NODES=http://"+first+",http://"+second+",http://"+third)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("chat-client.mjs: %v\n%s", err, out)
	}
}

package proc

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// shell is a /bin/sh command line run as a child.
func shell(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to run children with: %v", err)
	}
	return exec.Command(sh, "-c", script)
}

// started starts cmd with StartLogged into a new buffer; the child is
// killed when the test ends.
func started(t *testing.T, cmd *exec.Cmd) (*Process, *testkit.Buffer) {
	t.Helper()
	out := &testkit.Buffer{}
	p, err := StartLogged(cmd, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(nil, 0) })
	return p, out
}

// waitEnded fails the test unless p ends within 10 s.
func waitEnded(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d still runs after 10s", p.Pid())
	}
}

// waitOutput waits until out holds want.
func waitOutput(t *testing.T, out *testkit.Buffer, want string) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, "the child to print "+want, func() (bool, string) {
		return strings.Contains(out.String(), want), "its output so far: " + out.String()
	})
}

// wantEnded wants p no longer running once after has happened, and ended
// as exit says (its ExitText).
func wantEnded(t *testing.T, p *Process, after, exit string) {
	t.Helper()
	if p.Running() {
		t.Errorf("Running after %s", after)
	}
	if got := p.ExitText(); got != exit {
		t.Errorf("ExitText = %q, want %s", got, exit)
	}
}

func TestCleanExitCapturesOutputAndLogLines(t *testing.T) {
	p, out := started(t, shell(t, "echo to-stdout; echo to-stderr >&2"))
	waitEnded(t, p)
	wantEnded(t, p, "Exited closed", "exit status 0")
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
	log := out.String()
	for _, want := range []string{": starting sh -c echo to-stdout", "to-stdout\n", "to-stderr\n", ": process ended: exit status 0\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("output does not hold %q:\n%s", want, log)
		}
	}
	if !strings.HasPrefix(log, "==== ") || strings.Index(log, "starting") > strings.Index(log, "to-stdout") ||
		strings.Index(log, "to-stdout") > strings.Index(log, "process ended") {
		t.Errorf("want the starting line, the output, then the ended line:\n%s", log)
	}
}

func TestFailedExitIsReported(t *testing.T) {
	p, out := started(t, shell(t, "exit 3"))
	waitEnded(t, p)
	if got := p.ExitText(); got != "exit status 3" {
		t.Errorf("ExitText = %q, want exit status 3", got)
	}
	var exit *exec.ExitError
	if !errors.As(p.Err(), &exit) || exit.ExitCode() != 3 {
		t.Errorf("Err = %v, want an *exec.ExitError with code 3", p.Err())
	}
	if !strings.Contains(out.String(), "process ended: exit status 3") {
		t.Errorf("no ended line in the output:\n%s", out.String())
	}
}

func TestKillEndsARunningProcess(t *testing.T) {
	cmd := shell(t, "exec sleep 60")
	p, out := started(t, cmd)
	if !p.Running() {
		t.Fatalf("not running right after the start (%s)", p.ExitText())
	}
	if p.Pid() != cmd.Process.Pid || p.Pid() <= 0 {
		t.Errorf("Pid = %d, want the child's %d", p.Pid(), cmd.Process.Pid)
	}
	if got := p.ExitText(); got != "" {
		t.Errorf("ExitText while running = %q, want empty", got)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	// Kill waits: no further wait is needed to see the end.
	wantEnded(t, p, "Kill returned", "signal: killed")
	if !strings.Contains(out.String(), "process ended: signal: killed") {
		t.Errorf("no ended line in the output:\n%s", out.String())
	}
	if err := p.Kill(); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Kill of an ended process = %v, want os.ErrProcessDone", err)
	}
}

func TestStopWithASignalTheProcessObeys(t *testing.T) {
	p, _ := started(t, shell(t, "exec sleep 60"))
	if killed := p.Stop(syscall.SIGTERM, 10*time.Second); killed {
		t.Errorf("Stop killed a process that ends on SIGTERM (%s)", p.ExitText())
	}
	wantEnded(t, p, "Stop returned", "signal: terminated")
}

func TestStopKillsAProcessThatIgnoresTheSignal(t *testing.T) {
	// An ignored signal stays ignored across exec.
	p, out := started(t, shell(t, "trap '' TERM; echo ready; exec sleep 60"))
	waitOutput(t, out, "ready\n")
	if killed := p.Stop(syscall.SIGTERM, 200*time.Millisecond); !killed {
		t.Errorf("Stop did not report a kill; the process ended by %s", p.ExitText())
	}
	wantEnded(t, p, "Stop returned", "signal: killed")
}

func TestStopWithoutASignalWaitsForTheEnd(t *testing.T) {
	// The child ends when its stdin does, as the benchmark's members do.
	cmd := shell(t, "read line; echo got $line")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, out := started(t, cmd)
	if _, err := in.Write([]byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if killed := p.Stop(nil, 10*time.Second); killed {
		t.Errorf("Stop killed a process that ended by itself (%s)", p.ExitText())
	}
	if got := p.ExitText(); got != "exit status 0" {
		t.Errorf("ExitText = %q, want exit status 0", got)
	}
	if !strings.Contains(out.String(), "got bye\n") {
		t.Errorf("output:\n%s", out.String())
	}

	// Without a signal, one that does not end is killed at the timeout.
	p, _ = started(t, shell(t, "exec sleep 60"))
	if killed := p.Stop(nil, 100*time.Millisecond); !killed || p.Running() {
		t.Errorf("Stop(nil) of a sleeping process: killed %v, running %v; want it killed", killed, p.Running())
	}
	// A process that has ended is left alone.
	if killed := p.Stop(syscall.SIGTERM, time.Second); killed {
		t.Error("Stop of an ended process reported a kill")
	}
}

func TestStartLeavesTheStreamsTheCallerSet(t *testing.T) {
	cmd := shell(t, "echo to-stdout; echo to-stderr >&2")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	out := &testkit.Buffer{}
	p, err := Start(cmd, out)
	if err != nil {
		t.Fatal(err)
	}
	waitEnded(t, p)
	if got := stdout.String(); got != "to-stdout\n" {
		t.Errorf("the caller's stdout got %q, want to-stdout", got)
	}
	// Start, unlike StartLogged, adds no lines of its own.
	if got := out.String(); got != "to-stderr\n" {
		t.Errorf("out got %q, want only to-stderr", got)
	}
}

func TestStartFailureNamesTheProgram(t *testing.T) {
	missing := t.TempDir() + "/no-such-program"
	p, err := Start(exec.Command(missing), &bytes.Buffer{})
	if err == nil {
		p.Stop(nil, 0)
		t.Fatal("started a program that does not exist")
	}
	if !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v, want one naming %s and wrapping os.ErrNotExist", err, missing)
	}
}

func TestChildEnvDropsBackplaneVariables(t *testing.T) {
	t.Setenv("BACKPLANE_PROC_TEST", "set")
	t.Setenv("PROC_TEST_KEPT", "kept")
	env := ChildEnv()
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "BACKPLANE_") }) {
		t.Errorf("ChildEnv holds BACKPLANE_ variables: %q", env)
	}
	cmd := shell(t, `echo "[$BACKPLANE_PROC_TEST][$PROC_TEST_KEPT]"`)
	cmd.Env = env
	p, out := started(t, cmd)
	waitEnded(t, p)
	if !strings.Contains(out.String(), "[][kept]\n") {
		t.Errorf("the child saw, want [][kept]:\n%s", out.String())
	}
}

func TestTail(t *testing.T) {
	if got := Tail("short", 10); got != "short" {
		t.Errorf("Tail of a short text = %q", got)
	}
	if got := Tail("0123456789", 4); got != "[...]\n6789" {
		t.Errorf("Tail cut = %q, want [...] and the last 4 bytes", got)
	}
}

// Package proc owns a child process we started: the test harnesses and
// the benchmark start backplane nodes (and other helpers) with it. A
// Process knows whether its child still runs, its pid and how it ended;
// it can signal, kill and stop it. ChildEnv is the environment a child
// node gets, and StartLogged keeps the "==== <time>: …" lines that make a
// node's log readable when a test fails.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Process is a child process that Start or StartLogged started. Its
// methods are safe to call from several goroutines.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's answer; set before exited is closed
}

// Start starts cmd; whichever of its standard output and standard error
// the caller left nil goes to out. Anything else on cmd (Env, SysProcAttr,
// Stdin, pipes) is the caller's to set before.
func Start(cmd *exec.Cmd, out io.Writer) (*Process, error) {
	return start(cmd, out, func(error) {})
}

// StartLogged is Start for a process whose output is a log people read (a
// test prints it when it fails). It also writes two lines to out: "====
// <time>: starting <command line>" before the process starts, and "====
// <time>: process ended: <ExitText>" once it has ended, before Running
// reports false.
func StartLogged(cmd *exec.Cmd, out io.Writer) (*Process, error) {
	fmt.Fprintf(out, "==== %s: starting %s\n", stamp(), commandLine(cmd))
	return start(cmd, out, func(err error) {
		fmt.Fprintf(out, "==== %s: process ended: %s\n", stamp(), exitText(err))
	})
}

// commandLine is cmd's program (its base name) and arguments.
func commandLine(cmd *exec.Cmd) string {
	if len(cmd.Args) == 0 {
		return filepath.Base(cmd.Path)
	}
	return strings.Join(append([]string{filepath.Base(cmd.Args[0])}, cmd.Args[1:]...), " ")
}

func start(cmd *exec.Cmd, out io.Writer, ended func(error)) (*Process, error) {
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		ended(err)
		p.err = err
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has ended and its output is written.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not ended yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is how the process ended, as exec.Cmd.Wait reports it: nil while it
// runs and after it exited with status 0, an *exec.ExitError after it
// exited with another status or died of a signal.
func (p *Process) Err() error {
	if p.Running() {
		return nil
	}
	return p.err
}

// ExitText is how the process ended, in words: "exit status 0", "exit
// status 1", "signal: killed"; "" while it runs.
func (p *Process) ExitText() string {
	if p.Running() {
		return ""
	}
	return exitText(p.err)
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Signal sends sig to the process. It fails with os.ErrProcessDone once
// the process has ended.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal pid %d with %v: %w", p.Pid(), sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is gone. It fails with
// os.ErrProcessDone (having waited too) if the process had already ended.
func (p *Process) Kill() error {
	err := p.cmd.Process.Kill()
	if err == nil || errors.Is(err, os.ErrProcessDone) {
		<-p.exited // it is gone or going: Wait has returned or will
	}
	if err != nil {
		return fmt.Errorf("kill pid %d: %w", p.Pid(), err)
	}
	return nil
}

// Stop sends sig (nil: none) and waits up to timeout for the process to
// end; then it kills it with SIGKILL and waits. It reports whether it had
// to kill it. A process that has already ended is left as it is.
func (p *Process) Stop(sig os.Signal, timeout time.Duration) (killed bool) {
	if sig != nil {
		_ = p.cmd.Process.Signal(sig)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return false
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return true
	}
}

// ChildEnv is this process's environment without its BACKPLANE_*
// variables, so that a child node is configured by its command line alone.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BACKPLANE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Tail is the last limit bytes of a process's output s, after a "[...]"
// line when it had to cut: what an error message shows of a long log.
func Tail(s string, limit int) string {
	if len(s) > limit {
		return "[...]\n" + s[len(s)-limit:]
	}
	return s
}

// stamp is the time in the log lines: now, to the millisecond.
func stamp() string { return time.Now().Format(time.StampMilli) }

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/backplane/backplane/raftlog"
)

// The bare engine in three processes: the same members as startBareRaft's
// (openMember, memberServer), each in a process of its own, as Backplane's
// nodes are. The benchmark re-executes its own binary with bareMemberCmd as
// the first argument; a member writes its Raft address as its first line
// on stdout, then answers one memberRequest per line of stdin with one
// memberReply per line of stdout, and stops when stdin ends.

// bareMemberCmd, as the first argument, makes the binary a bare member.
const bareMemberCmd = "-bare-raft-member"

// runBareRaftMember runs one member until stdin ends; it returns the exit
// code.
func runBareRaftMember(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench "+bareMemberCmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "member id")
	dir := fs.String("data", "", "directory of the member's own directory")
	bootstrap := fs.Bool("bootstrap", false, "bootstrap the cluster")
	if err := fs.Parse(args); err != nil || *id == "" || *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "bare raft member: want -id and -data (and -bootstrap for the first)")
		return 2
	}
	m, err := openMember(*id, *dir, *bootstrap, func(c *raftlog.Config) {
		c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if err != nil {
		fmt.Fprintf(stderr, "bare raft member %s: %v\n", *id, err)
		return 1
	}
	defer func() { _ = m.r.Shutdown() }()
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(memberReply{RaftAddr: m.r.LocalAddr()}); err != nil {
		return 1
	}
	dec := json.NewDecoder(stdin)
	for {
		var req memberRequest
		if err := dec.Decode(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(stderr, "bare raft member %s: read a request: %v\n", *id, err)
				return 1
			}
			return 0
		}
		if err := enc.Encode(m.handle(context.Background(), req)); err != nil {
			return 1
		}
	}
}

// procMember is a member process.
type procMember struct {
	id       string
	raftAddr string
	cmd      *exec.Cmd
	exited   chan struct{}
	mu       sync.Mutex // one request at a time
	in       io.WriteCloser
	enc      *json.Encoder
	dec      *json.Decoder
}

func (p *procMember) name() string { return p.id }
func (p *procMember) pid() int     { return p.cmd.Process.Pid }

// call sends one request and reads the answer; ctx ending kills the
// process (an answer may take as long as a paced load).
func (p *procMember) call(ctx context.Context, req memberRequest) (memberReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = p.cmd.Process.Kill() })
	defer stop()
	var out memberReply
	if err := p.enc.Encode(req); err != nil {
		return out, fmt.Errorf("%s %s: %w", p.id, req.Op, err)
	}
	if err := p.dec.Decode(&out); err != nil {
		return out, fmt.Errorf("%s %s: no answer: %w", p.id, req.Op, err)
	}
	if out.Err != "" {
		return out, fmt.Errorf("%s %s: %s", p.id, req.Op, out.Err)
	}
	return out, nil
}

// startMemberProc starts member id with its data and log under dir and
// reads its Raft address.
func startMemberProc(exe, dir, id string, bootstrap bool) (*procMember, error) {
	args := []string{bareMemberCmd, "-id", id, "-data", dir}
	if bootstrap {
		args = append(args, "-bootstrap")
	}
	logFile, err := os.Create(filepath.Join(dir, id+".log"))
	if err != nil {
		return nil, err
	}
	p := &procMember{id: id, cmd: exec.Command(exe, args...), exited: make(chan struct{})}
	p.cmd.Stderr = logFile
	// Own process group: a terminal's Ctrl-C reaches only the benchmark.
	// Pdeathsig ends the member if the benchmark itself is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if p.in, err = p.cmd.StdinPipe(); err == nil {
		var out io.Reader
		if out, err = p.cmd.StdoutPipe(); err == nil {
			p.enc, p.dec = json.NewEncoder(p.in), json.NewDecoder(bufio.NewReader(out))
			err = p.cmd.Start()
		}
	}
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	var first memberReply
	if err := p.dec.Decode(&first); err != nil || first.RaftAddr == "" {
		p.kill()
		return nil, fmt.Errorf("%s did not start: %v: %s", id, err, tailFile(filepath.Join(dir, id+".log"), 2000))
	}
	p.raftAddr = first.RaftAddr
	return p, nil
}

// stop closes the member's stdin, which ends it, and kills it after 10 s.
func (p *procMember) stop() {
	_ = p.in.Close()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *procMember) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// startBareRaftProcs starts three member processes of this binary under a
// new temp dir, the first of which bootstraps the cluster and adds the
// others. kill ends them at once (a second Ctrl-C).
func startBareRaftProcs(ctx context.Context) (bc *bareCluster, kill func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the benchmark binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "backplane-bench-raftprocs-")
	if err != nil {
		return nil, nil, fmt.Errorf("create temp dir: %w", err)
	}
	var procs []*procMember
	bc = &bareCluster{}
	bc.stop = sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	kill = func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
		}
	}
	defer func() {
		if err != nil {
			bc.stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		p, err := startMemberProc(exe, dir, fmt.Sprintf("raft%d", i), i == 1)
		if err != nil {
			return bc, kill, err
		}
		procs = append(procs, p)
		bc.members = append(bc.members, p)
	}
	return bc, kill, bc.form(ctx, func(i int) string { return procs[i].raftAddr })
}

// raftProcsBaseline runs the paced measurement on a three-process cluster,
// which it stops before returning (or at Ctrl-C through the cleanups).
// Usage covers the three member processes, this one and the rest of the
// machine.
func (b *bench) raftProcsBaseline(ctx context.Context, perEntry int) (raftBaseline, error) {
	b.logf("baseline: bare three-member Raft cluster in three processes of this binary, %s msgs/s", human(b.cfg.rate))
	bc, kill, err := startBareRaftProcs(ctx)
	if bc != nil {
		b.cleanups.add(bc.stop, kill)
		defer bc.stop()
	}
	if err != nil {
		return raftBaseline{}, err
	}
	var procs []proc
	for _, m := range bc.members {
		b.logf("%s (pid %d)", m.name(), m.pid())
		procs = append(procs, proc{name: m.name(), pid: m.pid()})
	}
	meter := startUsage(procs)
	rb, err := bc.paced(ctx, perEntry, b.cfg.size, b.cfg.rate, b.cfg.duration)
	rb.Usage = meter.Stop()
	rb.For, rb.Processes = "broadcast", len(bc.members)
	return rb, err
}

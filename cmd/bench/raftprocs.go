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
	"strconv"
	"strings"
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
	*child
	id       string
	raftAddr string
	mu       sync.Mutex // one request at a time
	in       io.WriteCloser
	enc      *json.Encoder
	dec      *json.Decoder
}

func (p *procMember) name() string { return p.id }

// call sends one request and reads the answer; ctx ending kills the
// process (an answer may take as long as a paced load).
func (p *procMember) call(ctx context.Context, req memberRequest) (memberReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer context.AfterFunc(ctx, func() { _ = p.Signal(os.Kill) })()
	var out memberReply
	err := p.enc.Encode(req)
	if err == nil {
		err = p.dec.Decode(&out)
	}
	if err == nil && out.Err != "" {
		err = errors.New(out.Err)
	}
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", p.id, req.Op, err)
	}
	return out, nil
}

// startMemberProc starts member id of this binary with its data and log
// under dir and reads its Raft address.
func startMemberProc(exe, dir, id string, bootstrap bool) (*procMember, error) {
	cmd := exec.Command(exe, bareMemberCmd, "-id", id, "-data", dir, "-bootstrap="+strconv.FormatBool(bootstrap))
	p := &procMember{id: id}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.child, err = startChild(cmd, filepath.Join(dir, id+".log")); err != nil {
		return nil, err
	}
	p.in, p.enc, p.dec = in, json.NewEncoder(in), json.NewDecoder(bufio.NewReader(out))
	var first memberReply
	if err := p.dec.Decode(&first); err != nil || first.RaftAddr == "" {
		p.Stop(syscall.SIGKILL, time.Second)
		return nil, fmt.Errorf("%s did not start: %v: %s", id, err, p.logTail())
	}
	p.raftAddr = first.RaftAddr
	return p, nil
}

// startBareRaftProcs starts three member processes of this binary under a
// new temp dir, the first of which bootstraps the cluster and adds the
// others.
func startBareRaftProcs(ctx context.Context) (bc *bareCluster, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the benchmark binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "backplane-bench-raftprocs-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	var procs []*procMember
	bc = &bareCluster{}
	bc.stop = sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			// A member stops when its stdin ends.
			wg.Go(func() { _ = p.in.Close(); p.Stop(nil, 10*time.Second) })
		}
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	defer func() {
		if err != nil {
			bc.stop()
		}
	}()
	for i := 1; i <= 3; i++ {
		p, err := startMemberProc(exe, dir, fmt.Sprintf("raft%d", i), i == 1)
		if err != nil {
			return bc, err
		}
		procs = append(procs, p)
		bc.members = append(bc.members, p)
	}
	return bc, bc.form(ctx, func(i int) string { return procs[i].raftAddr })
}

// raftProcsBaseline runs the paced measurement on a three-process cluster,
// which it stops before returning.
// Usage covers the three member processes, this one and the rest of the
// machine.
func (b *bench) raftProcsBaseline(ctx context.Context, perEntry int) (*result, error) {
	b.logf("baseline: bare three-member Raft cluster in three processes of this binary, %s msgs/s", human(b.cfg.rate))
	bc, err := startBareRaftProcs(ctx)
	if bc != nil {
		defer bc.stop()
	}
	if err != nil {
		return nil, err
	}
	var procs []proc
	for _, m := range bc.members {
		procs = append(procs, proc{name: m.name(), pid: m.Pid()})
	}
	meter := startUsage(procs)
	r, err := bc.paced(ctx, perEntry, b.cfg.size, b.cfg.rate, b.cfg.duration)
	if err != nil {
		return nil, err
	}
	r.Usage = meter.Stop()
	r.Name = "bare Raft, 3 processes," + strings.TrimPrefix(r.Name, "bare Raft")
	r.Description = "each member in a process of its own (this binary re-executed), paced"
	return r, nil
}

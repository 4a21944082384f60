package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/backplane/backplane/raftlog"
)

// The bare engine in three processes: the same three members as
// startBareRaft's (bareMemberConfig, the no-op stamping state machine),
// but each in a process of its own, as Backplane's nodes are. The
// benchmark re-executes its own binary with bareMemberCmd as the first
// argument; each member serves a small control API on a loopback port:
//
//	GET  /admin/status, /readyz   what cluster.waitReady and cluster.leader read
//	POST /join?id=&addr=          add a voter (on the leader), as the nodes' -join does
//	POST /record?tag=             time the phase tagged tag (0: stop timing)
//	POST /paced?per_entry=&size=&rate=&duration=
//	                              run the paced load from this member (the leader)
//	GET  /committed               the paced load's messages committed so far
//	GET  /stats                   this member's stamp → applied histograms
//
// The leader member runs the paced load itself, with the loop the
// in-process baseline runs (pacedLoad): the stamp is taken in the
// leader's process just before raft.Apply, and no HTTP request per entry
// reaches any member, so what differs from the in-process baseline is
// only that the members are three processes.

// bareMemberCmd, as a process's first argument, makes it a bare Raft
// member instead of the benchmark (hidden from -help).
const bareMemberCmd = "-bare-raft-member"

// memberConfig is a member process's command line.
type memberConfig struct {
	id   string
	dir  string // Raft data and addresses.json
	join string // base URL of the member to join through; empty: bootstrap
}

// bareMemberArgs is the command line of member process n: it joins
// through join, or bootstraps the cluster if join is empty.
func bareMemberArgs(n *benchNode, join string) []string {
	args := []string{bareMemberCmd, "-id", n.id, "-data", n.dataDir}
	if join != "" {
		args = append(args, "-join", join)
	}
	return args
}

// parseMemberFlags reads a member's command line, after bareMemberCmd.
func parseMemberFlags(args []string, stderr io.Writer) (memberConfig, error) {
	fs := flag.NewFlagSet("bench "+bareMemberCmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg memberConfig
	fs.StringVar(&cfg.id, "id", "", "member id")
	fs.StringVar(&cfg.dir, "data", "", "data directory")
	fs.StringVar(&cfg.join, "join", "", "base URL of a member to join through (empty: bootstrap)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.id == "" || cfg.dir == "":
		return cfg, errors.New("-id and -data are required")
	}
	return cfg, nil
}

// bareMember is a running member process.
type bareMember struct {
	br        *bareRaft // with this member alone, for noopFSM and pacedLoad
	r         *raftlog.Raft
	committed counter // the paced load's messages committed
	pacing    atomic.Bool
}

// runBareRaftMember runs one member until SIGTERM or SIGINT; it returns
// the exit code.
func runBareRaftMember(args []string, stderr io.Writer) int {
	cfg, err := parseMemberFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bare raft member:", err)
		return 2
	}
	if err := serveBareMember(cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "bare raft member %s: %v\n", cfg.id, err)
		return 1
	}
	return 0
}

func serveBareMember(cfg memberConfig, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	br := &bareRaft{}
	rc := bareMemberConfig(cfg.id, cfg.dir, cfg.join == "", &noopFSM{br: br, member: 0})
	rc.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := raftlog.Open(rc)
	if err != nil {
		return err
	}
	defer func() { _ = r.Shutdown() }()
	br.mu.Lock()
	br.members, br.leader = []*raftlog.Raft{r}, r
	br.mu.Unlock()
	m := &bareMember{br: br, r: r}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if cfg.join != "" {
		if err := joinThrough(ctx, cfg.join, cfg.id, r.LocalAddr()); err != nil {
			return err
		}
	}
	if err := writeMemberAddresses(cfg.dir, ln.Addr().String(), r.LocalAddr()); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// writeMemberAddresses writes addresses.json as the nodes do (what
// cluster.launch waits for), through a rename so that it is never read
// half written.
func writeMemberAddresses(dir, httpAddr, raftAddr string) error {
	b, err := json.Marshal(map[string]string{"http_addr": httpAddr, "raft_addr": raftAddr})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "addresses.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "addresses.json"))
}

// joinThrough asks the member at base to add this one, until it does
// (it must first be the leader) or 30 s pass.
func joinThrough(ctx context.Context, base, id, raftAddr string) error {
	client := &http.Client{Timeout: 15 * time.Second}
	u := base + "/join?" + url.Values{"id": {id}, "addr": {raftAddr}}.Encode()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("join through %s: %w", base, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// memberStatus is a member's /admin/status, in the node's field names
// that nodeStatus reads.
type memberStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader struct {
		ID string `json:"id"`
	} `json:"leader"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// pacedReply is the leader member's answer to /paced.
type pacedReply struct {
	Commit  histSnapshot `json:"commit"`
	Offered int          `json:"offered"`
	Seconds float64      `json:"seconds"`
}

// memberStats is a member's /stats: what its state machine timed of the
// phase tagged Tag (0: none is being timed).
type memberStats struct {
	ID        string       `json:"id"`
	Tag       uint64       `json:"tag"`
	Leader    histSnapshot `json:"leader"`    // applied while leader
	Followers histSnapshot `json:"followers"` // applied while follower
	Applied   int64        `json:"applied"`
	AsLeader  int64        `json:"as_leader"`
}

func (m *bareMember) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/status", func(w http.ResponseWriter, _ *http.Request) {
		st := m.r.Status()
		out := memberStatus{ID: m.r.ID(), State: st.State, LastIndex: st.LastIndex, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex}
		out.Leader.ID = st.LeaderID
		members, err := m.r.Members()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, mb := range members {
			out.Members = append(out.Members, struct {
				ID string `json:"id"`
			}{mb.ID})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if id, _ := m.r.Leader(); id == "" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /join", func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.r.Join(r.FormValue("id"), r.FormValue("addr")); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, raftlog.ErrNotLeader) {
				code = http.StatusServiceUnavailable
			}
			http.Error(w, err.Error(), code)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /record", func(w http.ResponseWriter, r *http.Request) {
		tag, err := strconv.ParseUint(r.FormValue("tag"), 10, 64)
		if err != nil {
			http.Error(w, "tag: "+err.Error(), http.StatusBadRequest)
			return
		}
		if tag == 0 {
			m.br.stamps.Store(nil)
		} else {
			m.br.stamps.Store(newStampRecordingTag(1, tag))
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /paced", m.paced)
	mux.HandleFunc("GET /committed", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, m.committed.Load())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		out := memberStats{ID: m.r.ID()}
		if rec := m.br.stamps.Load(); rec != nil {
			out.Tag, out.Leader, out.Followers = rec.tag, rec.leader.snapshot(), rec.followers.snapshot()
			out.Applied, out.AsLeader = rec.applied[0].Load(), rec.asLeader[0].Load()
		}
		writeJSON(w, out)
	})
	return mux
}

// paced runs pacedLoad from this member, which must be the leader, with
// the recording /record installed; it answers when the load is over.
func (m *bareMember) paced(w http.ResponseWriter, r *http.Request) {
	perEntry, err1 := strconv.Atoi(r.FormValue("per_entry"))
	size, err2 := strconv.Atoi(r.FormValue("size"))
	rate, err3 := strconv.ParseFloat(r.FormValue("rate"), 64)
	d, err4 := time.ParseDuration(r.FormValue("duration"))
	if err := errors.Join(err1, err2, err3, err4); err != nil || perEntry < 1 || size < 0 || rate <= 0 || d <= 0 {
		http.Error(w, fmt.Sprintf("want per_entry ≥ 1, size ≥ 0, rate > 0, duration > 0: %v", err), http.StatusBadRequest)
		return
	}
	rec := m.br.stamps.Load()
	switch {
	case rec == nil:
		http.Error(w, "no recording: POST /record first", http.StatusConflict)
		return
	case !m.r.IsLeader():
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	case !m.pacing.CompareAndSwap(false, true):
		http.Error(w, "a paced load is already running", http.StatusConflict)
		return
	}
	defer m.pacing.Store(false)
	pl := pacedLoad(r.Context(), m.r, rec, perEntry, size, rate, d, &m.committed)
	writeJSON(w, pacedReply{Commit: pl.commit.snapshot(), Offered: pl.offered, Seconds: pl.secs})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// mergeMemberStats joins the members' recordings of the phase tagged tag
// into one, member i being stats[i].
func mergeMemberStats(stats []memberStats, tag uint64) (*stampRecording, error) {
	rec := newStampRecordingTag(len(stats), tag)
	for i, s := range stats {
		if s.Tag != tag {
			return nil, fmt.Errorf("%s timed phase %d, not %d", s.ID, s.Tag, tag)
		}
		if err := errors.Join(rec.leader.merge(s.Leader), rec.followers.merge(s.Followers)); err != nil {
			return nil, fmt.Errorf("%s: %w", s.ID, err)
		}
		rec.applied[i].Store(s.Applied)
		rec.asLeader[i].Store(s.AsLeader)
	}
	return rec, nil
}

// newBareRaftProcs makes the temp dir of a three-process cluster, to be
// started by startBareRaftProcs; its stop and kill end the processes and
// remove the dir.
func newBareRaftProcs() (*cluster, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the benchmark binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "backplane-bench-raftprocs-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	return &cluster{dir: dir, binary: exe, http: newHTTPClient(8)}, nil
}

// startBareRaftProcs starts the three member processes, the first of
// which bootstraps the cluster and adds the others, and waits until all
// three see three members and a leader.
func startBareRaftProcs(ctx context.Context, c *cluster) error {
	for i := 1; i <= 3; i++ {
		n := &benchNode{id: fmt.Sprintf("raft%d", i), dataDir: filepath.Join(c.dir, fmt.Sprintf("raft%d", i))}
		n.logPath = n.dataDir + ".log"
		join := ""
		if i > 1 {
			join = c.nodes[0].url
		}
		if err := c.launch(ctx, n, bareMemberArgs(n, join)); err != nil {
			if n.cmd != nil && n.cmd.Process != nil {
				c.nodes = append(c.nodes, n) // for stop to end it
			}
			return err
		}
		c.nodes = append(c.nodes, n)
	}
	return c.waitReady(ctx, 30*time.Second)
}

// post sends a POST and returns the body of a 200 answer.
func (c *cluster) post(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	return c.do(ctx, client, http.MethodPost, u)
}

// memberStats reads every member's /stats, in c.nodes' order.
func (c *cluster) memberStats(ctx context.Context) ([]memberStats, error) {
	out := make([]memberStats, len(c.nodes))
	for i, n := range c.nodes {
		b, err := c.get(ctx, n.url+"/stats")
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, fmt.Errorf("decode %s/stats: %w", n.url, err)
		}
	}
	return out, nil
}

// pacedProcs measures the three-process cluster as paced measures the
// in-process one: the leader member proposes at rate messages/s for d
// and every member times stamp → applied. Usage covers the three member
// processes, this one and the rest of the machine.
func pacedProcs(ctx context.Context, c *cluster, perEntry, size int, rate float64, d time.Duration, prog *counter) (raftBaseline, error) {
	li, err := c.leader(ctx)
	if err != nil {
		return raftBaseline{}, err
	}
	leader := c.nodes[li]
	tag := rand.Uint64() | 1
	for _, n := range c.nodes {
		if _, err := c.post(ctx, c.http, fmt.Sprintf("%s/record?tag=%d", n.url, tag)); err != nil {
			return raftBaseline{}, err
		}
	}
	meter := c.startUsage(ctx)
	// Progress: the leader's count, twice a second (the lines are once a
	// second).
	stopPoll := make(chan struct{})
	var polling sync.WaitGroup
	polling.Add(1)
	go func() {
		defer polling.Done()
		var last int64
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if b, err := c.get(ctx, leader.url+"/committed"); err == nil {
				if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > last {
					prog.Add(v - last)
					last = v
				}
			}
		}
	}()
	// The load's request lasts d: no client timeout, ctx ends it.
	q := url.Values{"per_entry": {strconv.Itoa(perEntry)}, "size": {strconv.Itoa(size)},
		"rate": {strconv.FormatFloat(rate, 'g', -1, 64)}, "duration": {d.String()}}
	b, err := c.post(ctx, &http.Client{Transport: c.http.Transport}, leader.url+"/paced?"+q.Encode())
	close(stopPoll)
	polling.Wait()
	if err != nil {
		return raftBaseline{}, err
	}
	var reply pacedReply
	if err := json.Unmarshal(b, &reply); err != nil {
		return raftBaseline{}, fmt.Errorf("decode /paced: %w", err)
	}
	commit := new(histogram)
	if err := commit.merge(reply.Commit); err != nil {
		return raftBaseline{}, fmt.Errorf("/paced: %w", err)
	}
	rb := pacedResult{commit: commit, offered: reply.Offered, secs: reply.Seconds}.baseline(perEntry, rate)
	rb.Processes = len(c.nodes)
	// The followers apply a little after the leader's commit returned.
	want := int64(rb.Commit.Count) * int64(len(c.nodes))
	var rec *stampRecording
	for deadline := time.Now().Add(5 * time.Second); ; {
		stats, err := c.memberStats(ctx)
		if err != nil {
			return rb, err
		}
		if rec, err = mergeMemberStats(stats, tag); err != nil {
			return rb, err
		}
		if rec.total() >= want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rb.Usage = meter.Stop(ctx)
	for _, n := range c.nodes {
		_, _ = c.post(ctx, c.http, n.url+"/record?tag=0")
	}
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.id
	}
	rb.addStampDelays(rec, ids, li, want)
	return rb, nil
}

// raftProcsBaseline runs the paced measurement on a three-process
// cluster, which it stops before returning (or at Ctrl-C through the
// cleanups).
func (b *bench) raftProcsBaseline(ctx context.Context, perEntry int) (raftBaseline, error) {
	b.logf("baseline: bare three-member Raft cluster in three processes of this binary")
	c, err := newBareRaftProcs()
	if err != nil {
		return raftBaseline{}, err
	}
	stop := func() { c.stop(b.logf) }
	b.cleanups.add(stop, c.kill)
	defer stop()
	if err := startBareRaftProcs(ctx, c); err != nil {
		return raftBaseline{}, err
	}
	for _, n := range c.nodes {
		b.logf("%s at %s (pid %d)", n.id, n.url, n.pid())
	}
	cnt := &counter{name: "committed"}
	prog := startProgress(b.stderr, fmt.Sprintf("bare raft, 3 processes, %s msgs/s", human(b.cfg.rate)), cnt)
	rb, err := pacedProcs(ctx, c, perEntry, b.cfg.size, b.cfg.rate, b.cfg.duration, cnt)
	prog.Stop()
	rb.For = "broadcast"
	return rb, err
}

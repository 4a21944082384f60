package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bench runs the scenarios against one cluster.
type bench struct {
	cfg      config
	logf     func(string, ...any)
	stderr   io.Writer
	cleanups *cleanups
	cl       *cluster
	pub      *publisher
	payload  payload
}

// scenarioFunc measures one scenario into r.
type scenarioFunc func(ctx context.Context, r *scenarioResult) error

// runAll starts (or reaches) the cluster, runs the scenarios, measures the
// disk, stops the cluster and runs the baselines.
func (b *bench) runAll(ctx context.Context, rep *report) error {
	b.logf("starting a local three-node cluster")
	var err error
	b.cl, err = startLocalCluster(ctx, b.cfg.binary, b.cfg.nodeArgs, b.logf)
	rep.Cluster = "local: 3 backplane processes on 127.0.0.1, data in a temp dir"
	if len(b.cfg.nodeArgs) > 0 {
		rep.Cluster += fmt.Sprintf(", node flags %q", b.cfg.nodeArgs)
	}
	if b.cl != nil {
		cl := b.cl
		b.cleanups.add(func() { cl.stop(b.logf) }, cl.kill)
	}
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, n := range b.cl.nodes {
		b.logf("%s at %s (pid %d)", n.id, n.url, n.pid())
	}
	b.pub = &publisher{http: newHTTPClient(max(b.cfg.publishers, b.cfg.inflight))}
	b.payload = newPayload(b.cfg.size)
	if b.cfg.pprofDir != "" {
		if err := os.MkdirAll(b.cfg.pprofDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	funcs := map[string]scenarioFunc{
		"idle": b.idle, "broadcast": b.broadcast, "chat": b.chat, "hifreq": b.hifreq, "hifreq-ws": b.hifreqWS, "fanout": b.fanout, "reconnect": b.reconnect,
		"storm": b.storm,
	}
	for _, name := range b.cfg.scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.Scenarios = append(rep.Scenarios, b.runScenario(ctx, name, funcs[name]))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rep.Disk, err = b.cl.disk(ctx); err != nil {
		b.logf("disk usage: %v", err)
	}
	for i, s := range sampleAll(b.cl.procs()) {
		if i < len(b.cl.nodes) && s.peakKB > 0 {
			rep.peakRSS = append(rep.peakRSS, float64(s.peakKB)/1024)
			rep.nodeNames = append(rep.nodeNames, b.cl.nodes[i].id)
		}
	}
	b.cl.stop(b.logf)
	if !b.cfg.baseline {
		return nil
	}
	return b.baselines(ctx, rep)
}

// runScenario waits for a quiet cluster, then runs one scenario while
// measuring the CPU and memory of every process.
func (b *bench) runScenario(ctx context.Context, name string, f scenarioFunc) *scenarioResult {
	r := &scenarioResult{Name: name}
	b.logf("scenario %s", name)
	if err := b.cl.settle(ctx, 30*time.Second); err != nil {
		b.logf("%s: %v (going on)", name, err)
	}
	start := time.Now()
	err := f(ctx, r)
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		r.Err = err.Error()
		b.logf("%s failed: %v", name, err)
	}
	return r
}

// measure is the measured window of a scenario: usage and, with -pprof,
// CPU profiles of the leader and a follower.
type measure struct {
	b        *bench
	r        *scenarioResult
	meter    *usageMeter
	profiles sync.WaitGroup
}

func (b *bench) startMeasure(ctx context.Context, r *scenarioResult) *measure {
	m := &measure{b: b, r: r, meter: startUsage(b.cl.procs())}
	if b.cfg.pprofDir == "" {
		return m
	}
	leader, err := b.cl.leader(ctx)
	if err != nil {
		b.logf("profile: %v", err)
		return m
	}
	secs := max(1, min(5, int(b.cfg.duration/time.Second)))
	for role, i := range map[string]int{"leader": leader, "follower": (leader + 1) % len(b.cl.nodes)} {
		n := b.cl.nodes[i]
		path := filepath.Join(b.cfg.pprofDir, fmt.Sprintf("%s-%s-%s.pb.gz", r.Name, role, n.id))
		m.profiles.Add(1)
		go func() {
			defer m.profiles.Done()
			body, err := b.cl.get(ctx, n.url+"/debug/pprof/profile?seconds="+strconv.Itoa(secs))
			if err == nil {
				err = os.WriteFile(path, body, 0o644)
			}
			if err != nil {
				b.logf("profile %s: %v", n.id, err)
				return
			}
			r.addNote("CPU profile (%ds) of the %s: %s", secs, role, path)
		}()
	}
	return m
}

// stop ends the window and records the usage; with -pprof it also saves
// the leader's heap profile (in use at the end of the window).
func (m *measure) stop(ctx context.Context) {
	m.r.Usage = m.meter.Stop()
	m.profiles.Wait()
	if m.b.cfg.pprofDir == "" {
		return
	}
	if leader, err := m.b.cl.leader(ctx); err == nil {
		n := m.b.cl.nodes[leader]
		path := filepath.Join(m.b.cfg.pprofDir, fmt.Sprintf("%s-heap-leader-%s.pb.gz", m.r.Name, n.id))
		body, err := m.b.cl.get(ctx, n.url+"/debug/pprof/heap")
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		if err != nil {
			m.b.logf("heap profile %s: %v", n.id, err)
			return
		}
		m.r.addNote("heap profile of the leader: %s", path)
	}
}

// loadSpec describes a REST publishing load.
type loadSpec struct {
	hub      string
	nodes    []int         // nodes to post to, round-robin by sequence number
	rate     float64       // publishes per second in total; 0: as fast as possible
	workers  int           // requests in flight at most
	duration time.Duration // stop after this long (with count 0)
	count    int64         // stop after this many publishes
	ack      *histogram    // publish → 202 latency
	ok, errs *counter
	// head, if set, is kept at the highest index acknowledged so far, as
	// the answers come (everything up to it is committed).
	head *atomic.Uint64
}

// loadResult is what a publishing load achieved.
type loadResult struct {
	elapsed    time.Duration
	committed  int64
	minIndex   uint64
	maxIndex   uint64
	behind     time.Duration // how far the paced schedule fell behind at worst
	firstError error
}

// publishLoad runs a REST publishing load until its duration or count.
func (b *bench) publishLoad(ctx context.Context, spec loadSpec) loadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		seq      atomic.Int64
		minIdx   atomic.Uint64
		maxIdx   atomic.Uint64
		errOnce  sync.Once
		firstErr error
		res      loadResult
		behind   atomic.Int64
	)
	minIdx.Store(^uint64(0))
	start := time.Now()
	var deadline time.Time
	if spec.count == 0 {
		deadline = start.Add(spec.duration)
	}
	// With a rate, a pacer hands out sequence numbers on schedule.
	var tokens chan int64
	if spec.rate > 0 {
		tokens = make(chan int64, spec.workers)
		go func() {
			defer close(tokens)
			var next int64
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				now := time.Now()
				if (!deadline.IsZero() && now.After(deadline)) || (spec.count > 0 && next >= spec.count) {
					return
				}
				due := int64(now.Sub(start).Seconds() * spec.rate)
				for ; next < due && (spec.count == 0 || next < spec.count); next++ {
					select {
					case tokens <- next:
					case <-ctx.Done():
						return
					}
				}
				if lag := time.Since(start.Add(time.Duration(float64(next) / spec.rate * float64(time.Second)))); int64(lag) > behind.Load() {
					behind.Store(int64(lag))
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	take := func() (int64, bool) {
		if tokens != nil {
			s, ok := <-tokens
			return s, ok
		}
		s := seq.Add(1) - 1
		if spec.count > 0 && s >= spec.count {
			return 0, false
		}
		return s, spec.count > 0 || time.Now().Before(deadline)
	}
	var wg sync.WaitGroup
	for range spec.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s, ok := take()
				if !ok {
					return
				}
				node := spec.nodes[int(s)%len(spec.nodes)]
				sent := time.Now()
				idx, err := b.pub.publish(ctx, b.cl.nodes[node].url, spec.hub, b.payload.restBody(sent, s, node))
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					spec.errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					time.Sleep(10 * time.Millisecond)
					continue
				}
				spec.ack.Record(time.Since(sent))
				spec.ok.Add(1)
				for m := minIdx.Load(); idx < m && !minIdx.CompareAndSwap(m, idx); m = minIdx.Load() {
				}
				for m := maxIdx.Load(); idx > m && !maxIdx.CompareAndSwap(m, idx); m = maxIdx.Load() {
				}
				if spec.head != nil {
					for m := spec.head.Load(); idx > m && !spec.head.CompareAndSwap(m, idx); m = spec.head.Load() {
					}
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.committed = spec.ok.Load()
	res.minIndex, res.maxIndex = minIdx.Load(), maxIdx.Load()
	res.firstError = firstErr
	res.behind = time.Duration(behind.Load())
	return res
}

// pickPublishNode returns the node the broadcast publisher posts to.
func (b *bench) pickPublishNode(ctx context.Context) (int, string, error) {
	leader, err := b.cl.leader(ctx)
	if err != nil {
		return 0, "", err
	}
	if b.cfg.publishTo == "follower" && len(b.cl.nodes) > 1 {
		return (leader + 1) % len(b.cl.nodes), "follower", nil
	}
	return leader, "leader", nil
}

// entryRatio is messages per Raft entry between two readings of the
// leader's counters.
func entryRatio(m0, e0, m1, e1 uint64) float64 {
	if e1 <= e0 {
		return 0
	}
	return float64(m1-m0) / float64(e1-e0)
}

var errNoMessages = errors.New("no message was committed")

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bench runs the scenarios against one cluster.
type bench struct {
	cfg     config
	logf    func(string, ...any)
	stderr  io.Writer
	cl      *cluster
	pub     *http.Client // the REST publishers'
	payload payload
}

// runAll starts the cluster, runs the scenarios, measures the disk, stops
// the cluster and runs the baselines. Everything it starts is stopped when
// it returns.
func (b *bench) runAll(ctx context.Context, rep *report) error {
	b.logf("starting a local three-node cluster")
	var err error
	b.cl, err = startLocalCluster(ctx, b.cfg.binary, b.cfg.nodeArgs, b.logf)
	rep.Cluster = "local: 3 backplane processes on 127.0.0.1, data in a temp dir"
	if len(b.cfg.nodeArgs) > 0 {
		rep.Cluster += fmt.Sprintf(", node flags %q", b.cfg.nodeArgs)
	}
	if b.cl != nil {
		defer b.cl.stop(b.logf)
	}
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, n := range b.cl.nodes {
		b.logf("%s at %s (pid %d)", n.id, n.url, n.Pid())
	}
	b.pub = newHTTPClient(max(b.cfg.publishers, b.cfg.inflight))
	b.payload = newPayload(b.cfg.size)
	if b.cfg.pprofDir != "" {
		if err := os.MkdirAll(b.cfg.pprofDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	funcs := map[string]func(context.Context, *result) error{
		"idle": b.idle, "broadcast": b.broadcast, "chat": b.chat, "hifreq": b.hifreq, "hifreq-ws": b.hifreqWS,
		"fanout": b.fanout, "reconnect": b.reconnect, "storm": b.storm,
	}
	for _, name := range b.cfg.scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.runScenario(ctx, rep, name, funcs[name])
	}
	if b.cfg.peers {
		b.peerScenarios(ctx, rep)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rep.Disk, err = b.cl.disk(ctx); err != nil {
		b.logf("disk usage: %v", err)
	}
	rep.PeakRSSMB = map[string]float64{}
	for i, s := range sampleAll(b.cl.procs())[:len(b.cl.nodes)] {
		if s.peakKB > 0 {
			rep.PeakRSSMB[b.cl.nodes[i].id] = float64(s.peakKB) / 1024
		}
	}
	b.cl.stop(b.logf)
	if b.cfg.baseline {
		if err := b.raftBaselines(ctx, rep); err != nil {
			return fmt.Errorf("bare raft baseline: %w", err)
		}
	}
	if b.cfg.peers { // the peers are what -peers asks for, with or without -baseline
		if err := b.peerBaselines(ctx, rep); err != nil {
			return err
		}
	}
	if !b.cfg.baseline {
		return nil
	}
	return b.wsBaselines(ctx, rep)
}

// runScenario runs one scenario once the cluster has settled and adds its
// result to rep.
func (b *bench) runScenario(ctx context.Context, rep *report, name string, run func(context.Context, *result) error) {
	r := &result{Name: name}
	b.logf("scenario %s", name)
	if err := b.cl.settle(ctx, 30*time.Second); err != nil {
		b.logf("%s: %v (going on)", name, err)
	}
	start := time.Now()
	if err := run(ctx, r); err != nil {
		r.Err = err.Error()
		b.logf("%s failed: %v", name, err)
	}
	r.Seconds = time.Since(start).Seconds()
	rep.Scenarios = append(rep.Scenarios, r)
}

// window is the measured phase of a scenario: progress lines, the usage
// of every process, the nodes' metrics and the log's totals at both ends
// and, with -pprof, CPU profiles of the leader and a follower.
type window struct {
	b        *bench
	r        *result
	prog     *progress
	metrics  *metricsMeter
	meter    *usageMeter
	m0, e0   uint64 // the leader's last message and Raft indexes at the start
	profiles sync.WaitGroup
	once     sync.Once
}

// start opens r's measured window; the progress lines show counters.
func (b *bench) start(ctx context.Context, r *result, counters ...*counter) *window {
	w := &window{b: b, r: r}
	w.m0, w.e0, _ = b.cl.logTotals(ctx)
	w.prog = startProgress(b.stderr, r.Name, counters...)
	w.metrics = b.cl.startMetricsMeter(ctx)
	w.meter = startUsage(b.cl.procs())
	if b.cfg.pprofDir == "" {
		return w
	}
	leader, err := b.cl.leader(ctx)
	if err != nil {
		b.logf("profile: %v", err)
		return w
	}
	secs := max(1, min(5, int(b.cfg.duration/time.Second)))
	for role, i := range map[string]int{"leader": leader, "follower": (leader + 1) % len(b.cl.nodes)} {
		w.profiles.Go(func() {
			w.profile(ctx, i, fmt.Sprintf("%s-%s-%s.pb.gz", r.Name, role, b.cl.nodes[i].id),
				"/debug/pprof/profile?seconds="+strconv.Itoa(secs), fmt.Sprintf("CPU profile (%ds) of the %s", secs, role))
		})
	}
	return w
}

// profile saves node i's profile at path under -pprof and notes it.
func (w *window) profile(ctx context.Context, i int, file, path, what string) {
	n := w.b.cl.nodes[i]
	file = filepath.Join(w.b.cfg.pprofDir, file)
	body, err := w.b.cl.get(ctx, n.url+path)
	if err == nil {
		err = os.WriteFile(file, body, 0o644)
	}
	if err != nil {
		w.b.logf("profile %s: %v", n.id, err)
		return
	}
	w.r.addNote("%s: %s", what, file)
}

// stop ends the window (once) and records the usage; with -pprof it also
// saves the leader's heap profile (in use at the end of the window). It
// returns the nodes' metrics over the window and the messages per Raft
// entry the leader committed.
func (w *window) stop(ctx context.Context) (ph phase, perEntry float64) {
	w.once.Do(func() {
		w.r.Usage = w.meter.Stop()
		w.prog.Stop()
		w.profiles.Wait()
		if w.b.cfg.pprofDir != "" {
			if leader, err := w.b.cl.leader(ctx); err == nil {
				w.profile(ctx, leader, fmt.Sprintf("%s-heap-leader-%s.pb.gz", w.r.Name, w.b.cl.nodes[leader].id), "/debug/pprof/heap", "heap profile of the leader")
			}
		}
		ph = w.metrics.Stop(ctx)
		if m1, e1, err := w.b.cl.logTotals(ctx); err == nil && e1 > w.e0 {
			perEntry = float64(m1-w.m0) / float64(e1-w.e0)
		}
	})
	return ph, perEntry
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
	elapsed            time.Duration
	committed          int64
	minIndex, maxIndex uint64
	behind             time.Duration // how far the paced schedule fell behind at worst
	firstError         error
}

// atomicInt is an atomic.Int64 or atomic.Uint64.
type atomicInt[T int64 | uint64] interface {
	Load() T
	CompareAndSwap(old, new T) bool
}

// storeMax raises v to x if x is higher.
func storeMax[T int64 | uint64](v atomicInt[T], x T) {
	for m := v.Load(); x > m && !v.CompareAndSwap(m, x); m = v.Load() {
	}
}

// publishLoad runs a REST publishing load until its duration or count.
// Each worker takes the next sequence number and, with a rate, waits for
// its time on the schedule.
func (b *bench) publishLoad(ctx context.Context, spec loadSpec) loadResult {
	var (
		seq            atomic.Int64
		minIdx, maxIdx atomic.Uint64
		behind         atomic.Int64
		errOnce        sync.Once
		firstErr       error
		start          = time.Now()
		deadline       = start.Add(spec.duration)
	)
	minIdx.Store(^uint64(0))
	next := func() (int64, bool) {
		s := seq.Add(1) - 1
		if spec.count > 0 {
			return s, s < spec.count
		}
		if spec.rate <= 0 {
			return s, time.Now().Before(deadline)
		}
		due := start.Add(time.Duration(float64(s) / spec.rate * float64(time.Second)))
		if due.After(deadline) {
			return s, false
		}
		time.Sleep(time.Until(due))
		if lag := int64(time.Since(due)); lag > behind.Load() {
			behind.Store(lag)
		}
		return s, true
	}
	var wg sync.WaitGroup
	for range spec.workers {
		wg.Go(func() {
			for s, ok := next(); ok && ctx.Err() == nil; s, ok = next() {
				node := spec.nodes[int(s)%len(spec.nodes)]
				sent := time.Now()
				idx, err := publish(ctx, b.pub, b.cl.nodes[node].url, spec.hub, b.payload.restBody(sent, s, node))
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
				storeMax(&maxIdx, idx)
				if spec.head != nil {
					storeMax(spec.head, idx)
				}
			}
		})
	}
	wg.Wait()
	return loadResult{elapsed: time.Since(start), committed: spec.ok.Load(), minIndex: minIdx.Load(), maxIndex: maxIdx.Load(),
		behind: time.Duration(behind.Load()), firstError: firstErr}
}

var errNoMessages = errors.New("no message was committed")

// drive calls publish until d has passed: with rate 0 from workers
// goroutines, each calling it again as soon as it returns; with a rate,
// once every 1/rate seconds, each call on a goroutine of its own. It
// times each call that succeeds into ack and counts it in ok; a call that
// fails is counted in errs and ends its worker. It returns the seconds it
// ran, the calls it started (with a rate; else 0) and the first error.
func drive(ctx context.Context, workers int, rate float64, d time.Duration, ack *histogram, ok, errs *counter,
	publish func(worker int) error) (secs float64, calls int, firstErr error) {
	var errOnce sync.Once
	call := func(w int) bool {
		t := time.Now()
		if err := publish(w); err != nil {
			errs.Add(1)
			errOnce.Do(func() { firstErr = err })
			return false
		}
		ack.Record(time.Since(t))
		ok.Add(1)
		return true
	}
	start := time.Now()
	var wg sync.WaitGroup
	if rate <= 0 {
		for w := range workers {
			wg.Go(func() {
				for ctx.Err() == nil && time.Since(start) < d && call(w) {
				}
			})
		}
	} else {
		interval := time.Duration(float64(time.Second) / rate)
		for next := start; time.Since(start) < d && ctx.Err() == nil; next = next.Add(interval) {
			time.Sleep(time.Until(next))
			w := calls
			wg.Go(func() { call(w) })
			calls++
		}
	}
	wg.Wait()
	return time.Since(start).Seconds(), calls, firstErr
}

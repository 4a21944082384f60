package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// The durable peers' comparison (-peers): Backplane's REST publishers at
// each of -peer-inflight (the hifreq scenario once per count), and, after
// the cluster stops, bare Raft at 1 message per entry at the same counts
// (and at hifreq's messages per entry at the largest), NATS JetStream R3
// with fsync always, and Redis Streams with appendfsync always when a
// redis-server is on PATH. The paced latency comparison is broadcast's
// (-rate) against each peer's paced run at the same rate.

// peerScenario names the hifreq run with inflight publishers.
func peerScenario(inflight int) string { return fmt.Sprintf("hifreq.%d", inflight) }

// peerScenarios runs hifreq once per -peer-inflight count.
func (b *bench) peerScenarios(ctx context.Context, rep *report) {
	for _, n := range b.cfg.peerInflight {
		if ctx.Err() != nil {
			return
		}
		bb := *b
		bb.cfg.publishers = n
		b.runScenario(ctx, rep, peerScenario(n), func(ctx context.Context, r *result) error {
			readers, err := b.startSSEReaders(ctx, "bench_hifreq", peerReaders)
			if err != nil {
				return err
			}
			err = bb.hifreq(ctx, r)
			readers.finish(ctx, r)
			return err
		})
	}
}

// peerBaselines measures bare Raft at the peers' in-flight counts, then
// JetStream, then Redis Streams (or says loudly why not).
func (b *bench) peerBaselines(ctx context.Context, rep *report) error {
	b.logf("peer comparison: bare Raft at 1 msg/entry per in-flight count")
	bc, err := startBareRaft(ctx)
	if err != nil {
		return fmt.Errorf("bare raft: %w", err)
	}
	defer bc.stop()
	measure := func(perEntry, n int) error {
		r, err := b.bareThroughput(ctx, bc, perEntry, n, peerScenario(n))
		if err != nil {
			return fmt.Errorf("bare raft: %w", err)
		}
		r.Name += " (peers)"
		rep.Baselines = append(rep.Baselines, r)
		return ctx.Err()
	}
	for _, n := range b.cfg.peerInflight {
		if err := measure(1, n); err != nil {
			return err
		}
	}
	n := b.cfg.peerInflight[len(b.cfg.peerInflight)-1]
	if k := perEntryOf(rep.scenario(peerScenario(n))); k > 1 {
		if err := measure(k, n); err != nil {
			return err
		}
	}
	bc.stop()
	b.logf("peer: NATS JetStream R3, three embedded servers, file storage, fsync always")
	nc, err := startNATS(ctx)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	defer nc.stop()
	err = b.peerRuns(ctx, rep, peer{name: "JetStream R3 fsync always", short: "jetstream", open: nc.open,
		about: "3 embedded nats-servers, file storage, sync always; publishers waiting for their acks, round robin over the 3 servers; %d ordered consumers over the 3 servers"})
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		b.logf("*** peer: Redis Streams SKIPPED: no redis-server on PATH (%v); install one to compare with it ***", err)
		rep.Baselines = append(rep.Baselines, &result{Name: "Redis Streams appendfsync always",
			Description: "SKIPPED: no redis-server on PATH", Notes: []string{"not measured: install redis-server to compare with it"}})
		return nil
	}
	b.logf("peer: Redis Streams, %s, appendfsync always", path)
	rs, err := startRedis(ctx, path)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer rs.stop()
	err = b.peerRuns(ctx, rep, peer{name: "Redis Streams appendfsync always", short: "redis", open: rs.open,
		procs: []proc{{name: "redis", pid: rs.pid}},
		about: "1 redis-server, appendonly yes, appendfsync always; XADD on a connection per publisher; %d XREAD BLOCK readers"})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// peer is a durable peer that runs: how to open a fresh stream on it.
type peer struct {
	name, short string // in the results; in the progress lines
	about       string // the description, with %d for the readers
	procs       []proc // its processes outside this one
	// open makes a fresh stream with readers following it from its start
	// and room for publishers publishing at once.
	open func(ctx context.Context, readers, publishers int) (*peerRun, error)
}

// peerRun is one measurement on a peer: a fresh stream and its readers,
// which time each message from the stamp in its first 8 bytes.
type peerRun struct {
	consume  histogram // stamp → message at a reader
	received counter
	publish  func(ctx context.Context, worker int, data []byte) error // waits for the ack
	close    func()
}

// receive records a message a reader got at now.
func (run *peerRun) receive(data []byte, now time.Time) {
	if len(data) >= 8 {
		run.consume.Record(now.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64(data)))))
	}
	run.received.Add(1)
}

// peerRuns measures p at each of -peer-inflight, as fast as it
// acknowledges, and paced at -rate.
func (b *bench) peerRuns(ctx context.Context, rep *report, p peer) error {
	runs := b.cfg.peerInflight
	if b.cfg.rate > 0 {
		runs = append(slices.Clone(runs), 0)
	}
	for _, inflight := range runs {
		r, err := b.peerRun(ctx, p, inflight)
		if err != nil {
			return err
		}
		rep.Baselines = append(rep.Baselines, r)
	}
	return nil
}

// peerRun measures inflight publishers as fast as they go, or (inflight
// 0) publishes paced at -rate, each on a goroutine of its own, over 64
// connections, with peerReaders readers.
func (b *bench) peerRun(ctx context.Context, p peer, inflight int) (*result, error) {
	label, rate, publishers := fmt.Sprintf("%d in flight", inflight), 0.0, inflight
	if inflight == 0 {
		label, rate, publishers = fmt.Sprintf("at %s msgs/s", human(b.cfg.rate)), b.cfg.rate, 64
	}
	run, err := p.open(ctx, peerReaders, publishers)
	if err != nil {
		return nil, err
	}
	var ack histogram
	ok, errs := &counter{name: "acked"}, &counter{name: "errors"}
	run.received.name = "read"
	prog := startProgress(b.stderr, p.short+" "+label, ok, errs, &run.received)
	meter := startUsage(p.procs)
	secs, _, firstErr := drive(ctx, inflight, rate, b.cfg.duration, &ack, ok, errs, func(w int) error {
		data := make([]byte, b.cfg.size)
		binary.LittleEndian.PutUint64(data, uint64(time.Now().UnixNano()))
		return run.publish(ctx, w, data)
	})
	want := ok.Load() * peerReaders
	waitDelivered(ctx, &run.received, want, 3*time.Second)
	prog.Stop()
	usage := meter.Stop()
	run.close()
	if ok.Load() == 0 {
		return nil, fmt.Errorf("%s: nothing acknowledged: %v", label, firstErr)
	}
	r := &result{Name: p.name + ", " + label, Description: fmt.Sprintf(p.about, peerReaders), Usage: usage,
		Params: map[string]any{"inflight": inflight, "rate": rate, "readers": peerReaders}}
	r.add("committed messages/s", float64(ok.Load())/secs, "msg/s")
	r.lat("ack", ack.Summary())
	r.lat("publish → consume", run.consume.Summary())
	r.add("reader deliveries", float64(run.received.Load())/float64(want), "of published × readers")
	if errs.Load() > 0 {
		r.addNote("%d publish errors, first: %v", errs.Load(), firstErr)
	}
	if inflight > 0 {
		r.versus = []versus{{peerScenario(inflight), "committed publishes/s", "committed messages/s"}}
	} else {
		r.versus = []versus{{"broadcast", "publish → 202 (commit)", "ack"},
			{"broadcast", "publish → delivery, other nodes", "publish → consume"}}
	}
	return r, nil
}

// peerReaders is how many readers follow the stream in the peers'
// comparison, on every system.
const peerReaders = 4

// sseReaders are native SSE readers of a hub on the followers, from the
// log's head on, as the peers' readers follow their streams.
type sseReaders struct {
	b        *bench
	head     uint64 // the log's last message index when they opened
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	lat      histogram // publish → delivery
	received counter
	opened   int
}

func (b *bench) startSSEReaders(ctx context.Context, hub string, n int) (*sseReaders, error) {
	li, err := b.cl.leader(ctx)
	if err != nil {
		return nil, err
	}
	head, _, err := b.cl.logTotals(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	rs := &sseReaders{cancel: cancel, b: b, head: head}
	rs.received.name = "read"
	hc := newStreamClient(n)
	for i := range n {
		node := b.cl.nodes[(li+1+i%(len(b.cl.nodes)-1))%len(b.cl.nodes)]
		resp, err := openStream(rctx, hc, node.url, hub, head)
		if err != nil {
			rs.stop()
			return nil, fmt.Errorf("SSE reader on %s: %w", node.id, err)
		}
		rs.opened++
		rs.wg.Go(func() {
			defer resp.Body.Close()
			_ = readSSE(bufio.NewReaderSize(resp.Body, 64<<10), func(_ uint64, data []byte) {
				if sent, ok := sentFromData(data); ok {
					rs.lat.Record(time.Since(time.Unix(0, sent)))
				}
				rs.received.Add(1)
			})
		})
	}
	return rs, nil
}

func (rs *sseReaders) stop() {
	rs.cancel()
	rs.wg.Wait()
}

// finish waits for the readers to catch up with the log's head, stops
// them and adds their figures to r.
func (rs *sseReaders) finish(ctx context.Context, r *result) {
	var want int64
	if head, _, err := rs.b.cl.logTotals(ctx); err == nil && head > rs.head {
		want = int64(head-rs.head) * int64(rs.opened)
	}
	waitDelivered(ctx, &rs.received, want, 3*time.Second)
	rs.stop()
	r.Description = strings.Replace(r.Description, "no subscribers", fmt.Sprintf("%d native SSE readers on the followers", rs.opened), 1)
	r.add("SSE readers on the followers", float64(rs.opened), "")
	r.add("reader deliveries", float64(rs.received.Load()), "msg")
	r.lat("publish → SSE reader on a follower", rs.lat.Summary())
}

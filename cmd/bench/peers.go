package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
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
		r := &result{Name: peerScenario(n)}
		b.logf("scenario %s", r.Name)
		if err := b.cl.settle(ctx, 30*time.Second); err != nil {
			b.logf("%s: %v (going on)", r.Name, err)
		}
		start := time.Now()
		readers, err := b.startSSEReaders(ctx, "bench_hifreq", peerReaders)
		if err == nil {
			err = bb.hifreq(ctx, r)
			readers.finish(ctx, r)
		}
		if err != nil {
			r.Err = err.Error()
			b.logf("%s failed: %v", r.Name, err)
		}
		r.Seconds = time.Since(start).Seconds()
		rep.Scenarios = append(rep.Scenarios, r)
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
	b.cleanups.add(bc.stop)
	measure := func(perEntry, inflight int, scen string) error {
		c := &counter{name: "committed"}
		prog := startProgress(b.stderr, fmt.Sprintf("bare raft %d msgs/entry, %d in flight", perEntry, inflight), c)
		meter := startUsage(nil)
		r, err := bc.throughput(ctx, perEntry, b.cfg.size, inflight, b.cfg.duration, c)
		prog.Stop()
		if err != nil {
			return err
		}
		r.Usage = meter.Stop()
		r.Name += " (peers)"
		r.versus = []versus{{scen, "committed publishes/s", "committed messages/s"}}
		rep.Baselines = append(rep.Baselines, r)
		return ctx.Err()
	}
	for _, n := range b.cfg.peerInflight {
		if err := measure(1, n, peerScenario(n)); err != nil {
			bc.stop()
			return fmt.Errorf("bare raft: %w", err)
		}
	}
	if n := b.cfg.peerInflight[len(b.cfg.peerInflight)-1]; rep.scenario(peerScenario(n)) != nil {
		if m := rep.scenario(peerScenario(n)).metric("messages per Raft entry"); m != nil && roundPerEntry(m.Value) > 1 {
			if err := measure(roundPerEntry(m.Value), n, peerScenario(n)); err != nil {
				bc.stop()
				return fmt.Errorf("bare raft: %w", err)
			}
		}
	}
	bc.stop()
	if err := b.natsBaselines(ctx, rep); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		b.logf("*** peer: Redis Streams SKIPPED: no redis-server on PATH (%v); install one to compare with it ***", err)
		rep.Baselines = append(rep.Baselines, &result{Name: "Redis Streams appendfsync always",
			Description: "SKIPPED: no redis-server on PATH", Notes: []string{"not measured: install redis-server to compare with it"}})
		return nil
	}
	if err := b.redisBaselines(ctx, rep, path); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
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
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, fmt.Sprintf("%s/v1/hubs/%s/stream?after=%d", node.url, hub, head), nil)
		if err != nil {
			rs.stop()
			return nil, err
		}
		resp, err := hc.Do(req)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
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

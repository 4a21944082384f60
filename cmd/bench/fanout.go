package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// fanoutTracker counts, per message, how many connections received it and
// when the last one did.
type fanoutTracker struct {
	n        int32 // connections
	count    []atomic.Int32
	lastRecv []atomic.Int64
	sentAt   []atomic.Int64
	// d times deliveries; it is replaced between phases.
	d atomic.Pointer[deliveryStats]
}

const maxFanoutSeq = 1 << 17

func newFanoutTracker(n int) *fanoutTracker {
	t := &fanoutTracker{n: int32(n), count: make([]atomic.Int32, maxFanoutSeq),
		lastRecv: make([]atomic.Int64, maxFanoutSeq), sentAt: make([]atomic.Int64, maxFanoutSeq)}
	t.d.Store(newDeliveryStats())
	return t
}

func (t *fanoutTracker) onMessage(c *hubClient, m *hubproto.Message, now time.Time) {
	st, ok := readStamp(m.Arguments)
	if !ok || st.seq < 0 || st.seq >= maxFanoutSeq {
		return
	}
	t.d.Load().onMessage(c, m, now)
	storeMax(&t.lastRecv[st.seq], now.UnixNano())
	t.count[st.seq].Add(1)
}

// reached reports whether every connection has message seq.
func (t *fanoutTracker) reached(seq int64) bool { return t.count[seq].Load() >= t.n }

// timeToAll is how long message seq took to reach the last connection.
func (t *fanoutTracker) timeToAll(seq int64) time.Duration {
	return time.Duration(t.lastRecv[seq].Load() - t.sentAt[seq].Load())
}

// singles sends n messages one at a time with send, which returns the
// message's sequence number, and times each until it reached every
// connection (within 10s).
func (t *fanoutTracker) singles(ctx context.Context, n int, send func() (int64, error)) (latency, error) {
	var h histogram
	for range n {
		s, err := send()
		if err != nil {
			return latency{}, fmt.Errorf("publish: %w", err)
		}
		if !t.waitAll(ctx, s, 10*time.Second) {
			return latency{}, fmt.Errorf("message %d reached %d of %d connections within 10s", s, t.count[s].Load(), t.n)
		}
		h.Record(t.timeToAll(s))
	}
	return h.Summary(), nil
}

// waitAll polls until message seq reached every connection or timeout.
func (t *fanoutTracker) waitAll(ctx context.Context, seq int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !t.reached(seq) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// fanout: many connections per node; first single messages timed until
// they reach every connection, then a stream with a bounded number of
// messages outstanding, for deliveries/s.
func (b *bench) fanout(ctx context.Context, r *result) error {
	const hub = "bench_fanout"
	cfg := b.cfg
	total := cfg.fanoutConn * len(b.cl.nodes)
	leader, err := b.cl.leader(ctx)
	if err != nil {
		return err
	}
	r.Params = map[string]any{"connections_per_node": cfg.fanoutConn, "connections": total, "single_messages": cfg.fanoutMsgs,
		"window": cfg.fanoutWin, "size": cfg.size, "duration_s": cfg.duration.Seconds()}
	r.Description = fmt.Sprintf("%d WebSocket connections (%d per node); REST publishes to the leader; %d single messages timed, then a stream with ≤%d messages outstanding (the raw WebSocket baseline queues ≤%d per connection), %d-byte arguments",
		total, cfg.fanoutConn, cfg.fanoutMsgs, cfg.fanoutWin, rawQueueDepth, cfg.size)
	t := newFanoutTracker(total)
	b.logf("fanout: opening %d connections", total)
	openStart := time.Now()
	clients, err := dialMany(ctx, b.cl, hub, total, t.onMessage, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer closeAll(clients)
	r.add("connections opened/s (negotiate+upgrade+handshake, 32 at a time)", float64(total)/time.Since(openStart).Seconds(), "conn/s")
	base := b.cl.nodes[leader].url
	var seq atomic.Int64
	publish := func() (int64, error) {
		s := seq.Add(1) - 1
		if s >= maxFanoutSeq {
			return s, fmt.Errorf("more than %d messages", maxFanoutSeq)
		}
		now := time.Now()
		t.sentAt[s].Store(now.UnixNano())
		_, err := publish(ctx, b.pub, base, hub, b.payload.restBody(now, s, leader))
		return s, err
	}

	// Single messages, one at a time.
	single, err := t.singles(ctx, cfg.fanoutMsgs, publish)
	if err != nil {
		n, why := dropped(clients)
		return fmt.Errorf("%w (%d dropped: %s)", err, n, why)
	}
	r.lat("one message → all connections", single)

	// The stream: window workers each publish and wait for their message
	// to reach everyone.
	streamStart := seq.Load()
	d := newDeliveryStats()
	t.d.Store(d)
	published, stalled := &counter{name: "published"}, &counter{name: "stalled"}
	w := b.start(ctx, r, published, d.delivered)
	frames0 := countFrames(clients)
	start := time.Now()
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range cfg.fanoutWin {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Since(start) < cfg.duration {
				s, err := publish()
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				published.Add(1)
				if !t.waitAll(ctx, s, 10*time.Second) {
					stalled.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	frames1 := countFrames(clients)
	ph, _ := w.stop(ctx)
	if firstErr != nil {
		return firstErr
	}
	var streamAll histogram
	for s := streamStart; s < seq.Load(); s++ {
		if t.reached(s) {
			streamAll.Record(t.timeToAll(s))
		}
	}
	deliveries := d.delivered.Load()
	r.add("deliveries/s", float64(deliveries)/elapsed.Seconds(), "msg/s")
	r.add("messages/s (each to every connection)", float64(published.Load())/elapsed.Seconds(), "msg/s")
	r.add("records per WebSocket frame", recordsPerFrame(frames0, frames1), "")
	r.lat("stream: message → all connections", streamAll.Summary())
	r.lat("stream: publish → delivery, same node", d.same.Summary())
	r.lat("stream: publish → delivery, other nodes", d.other.Summary())
	ph.addDelays(r, "stream: ")
	if n, why := dropped(clients); n > 0 || stalled.Load() > 0 {
		r.addNote("%d connections dropped (%s); %d messages never reached all", n, why, stalled.Load())
	}
	return nil
}

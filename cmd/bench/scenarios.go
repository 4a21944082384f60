package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// deliveryStats times deliveries by whether the receiver is on the node
// the message entered through.
type deliveryStats struct {
	same, other histogram
	delivered   *counter
}

func newDeliveryStats() *deliveryStats {
	return &deliveryStats{delivered: &counter{name: "delivered"}}
}

// onMessage is a hubClient callback that records a benchmark message.
func (d *deliveryStats) onMessage(c *hubClient, m *hubproto.Message, now time.Time) {
	if m.Target != targetMethod {
		return
	}
	st, ok := readStamp(m.Arguments)
	if !ok {
		return
	}
	lat := now.Sub(time.Unix(0, st.sent))
	if c.node == st.origin {
		d.same.Record(lat)
	} else {
		d.other.Record(lat)
	}
	d.delivered.Add(1)
}

// waitDelivered waits until want deliveries arrived, or no delivery came
// for idle.
func waitDelivered(ctx context.Context, c *counter, want int64, idle time.Duration) {
	last, lastChange := c.Load(), time.Now()
	for c.Load() < want && time.Since(lastChange) < idle && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		if v := c.Load(); v != last {
			last, lastChange = v, time.Now()
		}
	}
}

// broadcast: one REST publisher (many requests in flight) posts to one
// node at a fixed rate; subscribers spread over every node receive it.
func (b *bench) broadcast(ctx context.Context, r *result) error {
	const hub = "bench_broadcast"
	cfg := b.cfg
	origin, err := b.cl.leader(ctx)
	if err != nil {
		return err
	}
	r.Params = map[string]any{"subscribers": cfg.clients, "rate": cfg.rate, "inflight": cfg.inflight,
		"size": cfg.size, "duration_s": cfg.duration.Seconds()}
	r.Description = fmt.Sprintf("1 REST publisher → %s (the leader), %s msgs/s (≤%d in flight), %d WebSocket subscribers over %d nodes, %d-byte arguments",
		b.cl.nodes[origin].id, rateText(cfg.rate), cfg.inflight, cfg.clients, len(b.cl.nodes), cfg.size)
	d := newDeliveryStats()
	clients, err := dialMany(ctx, b.cl, hub, cfg.clients, d.onMessage, nil)
	if err != nil {
		return fmt.Errorf("connect subscribers: %w", err)
	}
	defer closeAll(clients)
	var ack histogram
	ok, errs := &counter{name: "published"}, &counter{name: "errors"}
	w := b.start(ctx, r, ok, d.delivered, errs)
	load := b.publishLoad(ctx, loadSpec{hub: hub, nodes: []int{origin}, rate: cfg.rate, workers: cfg.inflight,
		duration: cfg.duration, ack: &ack, ok: ok, errs: errs})
	want := load.committed * int64(cfg.clients)
	waitDelivered(ctx, d.delivered, want, 3*time.Second)
	ph, perEntry := w.stop(ctx)
	secs := load.elapsed.Seconds()
	r.add("committed publishes/s", float64(load.committed)/secs, "msg/s")
	r.add("deliveries/s", float64(d.delivered.Load())/secs, "msg/s")
	r.add("delivered / expected", ratioOf(d.delivered.Load(), want), "")
	r.add("messages per Raft entry", perEntry, "")
	ph.addCommit(r, secs)
	r.lat("publish → 202 (commit)", ack.Summary())
	r.lat("publish → delivery, same node", d.same.Summary())
	r.lat("publish → delivery, other nodes", d.other.Summary())
	ph.addDelays(r, "")
	if n, why := dropped(clients); n > 0 {
		r.addNote("%d subscribers were disconnected: %s", n, why)
	}
	noteLoad(r, load, errs)
	return nil
}

// hifreq: many REST publishers over every node post small messages as fast
// as they can; nobody subscribes.
func (b *bench) hifreq(ctx context.Context, r *result) error {
	const hub = "bench_hifreq"
	cfg := b.cfg
	r.Params = map[string]any{"publishers": cfg.publishers, "size": cfg.size, "duration_s": cfg.duration.Seconds()}
	r.Description = fmt.Sprintf("%d concurrent REST publishers over %d nodes, as fast as possible, %d-byte arguments, no subscribers",
		cfg.publishers, len(b.cl.nodes), cfg.size)
	var ack histogram
	ok, errs := &counter{name: "committed"}, &counter{name: "errors"}
	w := b.start(ctx, r, ok, errs)
	load := b.publishLoad(ctx, loadSpec{hub: hub, nodes: b.allNodes(), workers: cfg.publishers,
		duration: cfg.duration, ack: &ack, ok: ok, errs: errs})
	ph, perEntry := w.stop(ctx)
	if load.committed == 0 {
		return fmt.Errorf("%w: %v", errNoMessages, load.firstError)
	}
	r.add("committed publishes/s", float64(load.committed)/load.elapsed.Seconds(), "msg/s")
	r.add("messages per Raft entry", perEntry, "")
	ph.addCommit(r, load.elapsed.Seconds())
	r.lat("publish → 202 (commit)", ack.Summary())
	noteLoad(r, load, errs)
	return nil
}

func (b *bench) allNodes() []int {
	out := make([]int, len(b.cl.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

// chat: clients in groups of K, spread over the nodes, each invoking
// SendToGroup at a fixed rate; every member of the group receives it.
func (b *bench) chat(ctx context.Context, r *result) error {
	const hub = "bench_chat"
	cfg := b.cfg
	r.Params = map[string]any{"clients": cfg.clients, "group_size": cfg.groupSize, "rate_per_client": cfg.chatRate,
		"size": cfg.size, "duration_s": cfg.duration.Seconds()}
	groups := (cfg.clients + cfg.groupSize - 1) / cfg.groupSize
	r.Description = fmt.Sprintf("%d WebSocket clients over %d nodes in %d groups of ≤%d, each SendToGroup %s/s, %d-byte arguments",
		cfg.clients, len(b.cl.nodes), groups, cfg.groupSize, strconv.FormatFloat(cfg.chatRate, 'f', -1, 64), cfg.size)
	d := newDeliveryStats()
	var complete histogram
	var joining atomic.Bool // while set, completions go to done
	joining.Store(true)
	sent, completed, errs := &counter{name: "sent"}, &counter{name: "completed"}, &counter{name: "errors"}
	onCompletion := func(c *hubClient, m *hubproto.Message, now time.Time) {
		if joining.Load() {
			c.done <- m.Error
			return
		}
		if m.Error != "" {
			errs.Add(1)
			return
		}
		if at, ok := c.sentTime(m.InvocationID); ok {
			complete.Record(now.Sub(time.Unix(0, at)))
		}
		completed.Add(1)
	}
	clients, err := dialMany(ctx, b.cl, hub, cfg.clients, d.onMessage, onCompletion)
	if err != nil {
		return fmt.Errorf("connect clients: %w", err)
	}
	defer closeAll(clients)
	group := func(i int) string { return "g" + strconv.Itoa(i/cfg.groupSize) }
	if err := b.joinGroups(ctx, clients, group); err != nil {
		return err
	}
	joining.Store(false)
	sizes := make([]int64, groups)
	for i := range clients {
		sizes[i/cfg.groupSize]++
	}

	w := b.start(ctx, r, sent, completed, d.delivered, errs)
	start := time.Now()
	var wg sync.WaitGroup
	var want int64
	var wantMu sync.Mutex
	interval := time.Duration(float64(time.Second) / cfg.chatRate)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(rand.Int64N(int64(interval))))
			var seq int64
			for ctx.Err() == nil {
				time.Sleep(time.Until(next))
				now := time.Now()
				if now.Sub(start) >= cfg.duration {
					return
				}
				args := b.payload.values(nil, now, seq, c.node, group(i), targetMethod)
				if err := c.invoke("SendToGroup", args, now); err != nil {
					errs.Add(1)
					return
				}
				sent.Add(1)
				wantMu.Lock()
				want += sizes[i/cfg.groupSize]
				wantMu.Unlock()
				seq++
				next = next.Add(interval)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	waitDelivered(ctx, completed, sent.Load(), 3*time.Second)
	waitDelivered(ctx, d.delivered, want, 3*time.Second)
	w.stop(ctx)
	secs := elapsed.Seconds()
	r.add("sends/s (SendToGroup)", float64(sent.Load())/secs, "msg/s")
	r.add("deliveries/s", float64(d.delivered.Load())/secs, "msg/s")
	r.add("delivered / expected", ratioOf(d.delivered.Load(), want), "")
	r.lat("invoke → completion (commit)", complete.Summary())
	r.lat("send → delivery, same node", d.same.Summary())
	r.lat("send → delivery, other nodes", d.other.Summary())
	if n, why := dropped(clients); n > 0 {
		r.addNote("%d clients were disconnected: %s", n, why)
	}
	if errs.Load() > 0 {
		r.addNote("%d invocations failed", errs.Load())
	}
	return nil
}

// joinGroups has every client invoke JoinGroup and waits for each
// completion, 32 clients at a time.
func (b *bench) joinGroups(ctx context.Context, clients []*hubClient, group func(int) string) error {
	_, err := openMany(ctx, len(clients), nil, func(i int) (struct{}, error) {
		if err := clients[i].invokeWait(ctx, "JoinGroup", hubproto.JSONValue(strconv.AppendQuote(nil, group(i)))); err != nil {
			return struct{}{}, fmt.Errorf("client %d JoinGroup: %w", i, err)
		}
		return struct{}{}, nil
	})
	return err
}

func ratioOf(got, want int64) float64 {
	if want == 0 {
		return 0
	}
	return float64(got) / float64(want)
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "unpaced"
	}
	return human(rate)
}

// noteLoad records publishing errors and schedule lag.
func noteLoad(r *result, load loadResult, errs *counter) {
	if n := errs.Load(); n > 0 {
		r.addNote("%d publishes failed; first: %v", n, load.firstError)
	}
	if load.behind > 100*time.Millisecond {
		r.addNote("the paced publisher fell up to %s behind its schedule (in-flight limit reached)", load.behind.Round(time.Millisecond))
	}
}

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// hifreqWS: the hifreq load (many publishers over every node, as fast as
// possible, no subscribers) sent by SignalR WebSocket clients that invoke
// the relay method SendToGroup on a group nobody joined, each keeping
// -ws-pipeline invocations outstanding. A completion without error means
// the message is committed. (SendToAll would make every publisher a
// subscriber of every message: 64× fan-out on top of the publishes.)
func (b *bench) hifreqWS(ctx context.Context, r *result) error {
	const hub = "bench_hifreq_ws"
	cfg := b.cfg
	r.Params = map[string]any{"publishers": cfg.publishers, "pipeline": cfg.wsPipeline, "size": cfg.size,
		"duration_s": cfg.duration.Seconds()}
	r.Description = fmt.Sprintf("%d SignalR WebSocket publishers over %d nodes invoking SendToGroup (a group nobody joined), ≤%d invocations outstanding each, as fast as possible, %d-byte arguments, no subscribers",
		cfg.publishers, len(b.cl.nodes), cfg.wsPipeline, cfg.size)

	var (
		complete histogram
		lastDone atomic.Int64 // unix nanos of the latest completion
		errMu    sync.Mutex
		firstErr string                                       // guarded by errMu
		slotsOf  atomic.Pointer[map[*hubClient]chan struct{}] // set once the clients are open
		ok, errs = &counter{name: "committed"}, &counter{name: "errors"}
		sent     = &counter{name: "sent"}
		noteErr  = func(msg string) {
			errMu.Lock()
			defer errMu.Unlock()
			if firstErr == "" {
				firstErr = msg
			}
		}
	)
	onCompletion := func(c *hubClient, m *hubproto.Message, now time.Time) {
		if m.Error != "" {
			errs.Add(1)
			noteErr(m.Error)
		} else {
			if at, found := c.sentTime(m.InvocationID); found {
				complete.Record(now.Sub(time.Unix(0, at)))
			}
			ok.Add(1)
		}
		storeMax(&lastDone, now.UnixNano())
		if slots := slotsOf.Load(); slots != nil {
			select { // free the slot: the publisher may send the next one
			case <-(*slots)[c]:
			default:
			}
		}
	}
	clients, err := dialMany(ctx, b.cl, hub, cfg.publishers, nil, onCompletion)
	if err != nil {
		return fmt.Errorf("connect publishers: %w", err)
	}
	defer closeAll(clients)
	slots := make(map[*hubClient]chan struct{}, len(clients))
	for _, c := range clients {
		slots[c] = make(chan struct{}, cfg.wsPipeline)
	}
	slotsOf.Store(&slots)

	// The window opens after the connections opened (their opens are
	// entries without messages) and closes before they close.
	w := b.start(ctx, r, ok, errs)
	start := time.Now()
	var seq atomic.Int64
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot := slots[c]
			var args []hubproto.RawValue
			for {
				select {
				case slot <- struct{}{}:
				case <-c.closed:
					return
				case <-ctx.Done():
					return
				}
				now := time.Now()
				if now.Sub(start) >= cfg.duration {
					return
				}
				args = b.payload.values(args[:0], now, seq.Add(1)-1, c.node, noSubscriberGroup, targetMethod)
				if err := c.invoke("SendToGroup", args, now); err != nil {
					errs.Add(1)
					noteErr(fmt.Sprintf("send SendToGroup invocation: %v", err))
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	undrained := poll(ctx, 10*time.Second, 5*time.Millisecond, func() (bool, string) {
		n, _ := dropped(clients)
		return ok.Load()+errs.Load() >= sent.Load() || n == len(clients), ""
	})
	ph, perEntry := w.stop(ctx)
	errMu.Lock()
	first := firstErr
	errMu.Unlock()
	if ok.Load() == 0 {
		return fmt.Errorf("%w: %d invocations failed; first: %s", errNoMessages, errs.Load(), first)
	}
	// As in hifreq, the load ends when the last answer arrived.
	secs := time.Unix(0, lastDone.Load()).Sub(start).Seconds()
	r.add("committed publishes/s", float64(ok.Load())/secs, "msg/s")
	r.add("messages per Raft entry", perEntry, "")
	ph.addCommit(r, secs)
	r.lat("invoke → completion (commit)", complete.Summary())
	if n := errs.Load(); n > 0 {
		r.addNote("%d publishes failed; first: %v", n, first)
	}
	if undrained != nil || ok.Load()+errs.Load() < sent.Load() {
		r.addNote("%d invocations had no completion 10s after sending stopped", sent.Load()-ok.Load()-errs.Load())
	}
	if n, why := dropped(clients); n > 0 {
		r.addNote("%d publishers were disconnected: %s", n, why)
	}
	return nil
}

// noSubscriberGroup is the group hifreq-ws sends to: nobody joins it. The
// relay takes the group and the target first and the message's own
// arguments after them, so the committed message has the same arguments
// as a hifreq REST publish.
const noSubscriberGroup = "bench_nobody"

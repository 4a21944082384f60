package upstream

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"sync"
	"time"

	"github.com/backplane/backplane/transport/signalr"
)

// eventWorkers is how many connection-event deliveries run at once. One
// connection's events always go through the same worker, in order.
const eventWorkers = 4

// maxEventBackoff caps the delay between two attempts.
const maxEventBackoff = 30 * time.Second

// connEvent is one connected or disconnected event waiting for delivery.
type connEvent struct {
	c     signalr.ConnInfo
	event string
	body  []byte
	since time.Time
}

// eventQueue delivers connection events asynchronously, at least once
// unless dropped: bounded queues, bounded attempts and age.
type eventQueue struct {
	u      *Upstream
	queues []chan connEvent
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newEventQueue(u *Upstream) *eventQueue {
	q := &eventQueue{u: u, done: make(chan struct{})}
	per := u.cfg.EventQueue / eventWorkers
	if per < 1 {
		per = 1
	}
	for i := 0; i < eventWorkers; i++ {
		ch := make(chan connEvent, per)
		q.queues = append(q.queues, ch)
		q.wg.Add(1)
		go q.run(ch)
	}
	return q
}

// close stops the workers and waits for them.
func (q *eventQueue) close() {
	q.once.Do(func() { close(q.done) })
	q.wg.Wait()
}

// add queues an event without blocking; a full queue drops it.
func (q *eventQueue) add(ev connEvent) {
	h := fnv.New32a()
	h.Write([]byte(ev.c.Hub + "\x00" + ev.c.ID))
	select {
	case <-q.done:
		q.u.log.Warn("upstream closed: connection event dropped", "event", ev.event, "hub", ev.c.Hub, "conn", ev.c.ID)
	case q.queues[h.Sum32()%eventWorkers] <- ev:
	default:
		q.u.log.Warn("upstream event queue full: connection event dropped", "event", ev.event, "hub", ev.c.Hub, "conn", ev.c.ID)
	}
}

func (q *eventQueue) run(ch chan connEvent) {
	defer q.wg.Done()
	for {
		select {
		case <-q.done:
			if n := len(ch); n > 0 {
				q.u.log.Warn("upstream closed: queued connection events dropped", "count", n)
			}
			return
		case ev := <-ch:
			q.deliver(ev)
		}
	}
}

// deliver tries one event until it succeeds, fails for good, runs out of
// attempts or age, or the queue closes.
func (q *eventQueue) deliver(ev connEvent) {
	u := q.u
	backoff := u.cfg.EventBackoff
	for attempt := 1; ; attempt++ {
		target := find(u.cfg.Rules, ev.c.Hub, CategoryConnections, ev.event)
		if target == "" {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-q.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		ans, err := u.post(ctx, request{url: target, c: &ev.c, category: CategoryConnections, event: ev.event, contentType: contentJSON, body: ev.body})
		cancel()
		retry := false
		switch {
		case err != nil:
			retry = true
		case ans.ok():
			return
		case ans.status >= 500 || ans.status == http.StatusTooManyRequests || ans.status == http.StatusRequestTimeout:
			retry = true
		}
		attrs := []any{"event", ev.event, "hub", ev.c.Hub, "conn", ev.c.ID, "attempt", attempt}
		if err != nil {
			attrs = append(attrs, "err", err)
		} else {
			attrs = append(attrs, "status", ans.status)
		}
		if !retry {
			u.log.Warn("upstream refused a connection event; not retried", attrs...)
			return
		}
		if attempt >= u.cfg.EventAttempts || time.Since(ev.since)+backoff > u.cfg.EventMaxAge {
			u.log.Warn("upstream connection event dropped after its last attempt", attrs...)
			return
		}
		u.log.Debug("upstream connection event failed; retrying", append(attrs, "in", backoff)...)
		t := time.NewTimer(backoff)
		select {
		case <-q.done:
			t.Stop()
			u.log.Warn("upstream closed: connection event dropped", attrs...)
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxEventBackoff)
	}
}

// Connected implements signalr.Application: it queues connections/
// connected ({"type":10}) and returns at once.
func (u *Upstream) Connected(c signalr.ConnInfo) {
	u.events.add(connEvent{c: c, event: EventConnected, body: []byte(`{"type":10}`), since: time.Now()})
}

// Disconnected implements signalr.Application: it queues connections/
// disconnected ({"type":11,"error":...}) and returns at once.
func (u *Upstream) Disconnected(c signalr.ConnInfo, errMsg string) {
	body := []byte(`{"type":11}`)
	if errMsg != "" {
		b, err := json.Marshal(struct {
			Type  int    `json:"type"`
			Error string `json:"error"`
		}{11, errMsg})
		if err == nil {
			body = b
		}
	}
	u.events.add(connEvent{c: c, event: EventDisconnected, body: body, since: time.Now()})
}

package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends a new payload rate times a second to the hub, each with
// its own Idempotency-Key, as a careful producer would: on an error, a
// timeout or a retryable status (503, 507, 502, 504) it sends the same
// payload with the same key again, to the next node that is up (round
// robin), until it is acknowledged or retryFor has passed. It records every
// acknowledged payload with the index its 202 named.
type publisher struct {
	c        *cluster
	hub      string
	rate     int
	pad      string
	retryFor time.Duration

	next     atomic.Uint64 // round robin
	seq      atomic.Uint64 // payload numbers
	inFlight atomic.Int64
	attempts atomic.Int64 // requests sent
	retries  atomic.Int64 // requests after the first of a payload
	skipped  atomic.Int64 // ticks with maxInFlight payloads already pending
	peak     atomic.Int64 // most payloads pending at once
	aborted  atomic.Bool  // the test is over: pending payloads give up

	mu      sync.Mutex
	sent    map[string]bool   // every payload ever sent
	acked   map[string]uint64 // payload -> index its 202 named
	ackedAt []time.Time       // when each acknowledgement arrived
	failed  []string          // payloads never acknowledged
	errs    []string          // answers that break the protocol

	stop chan struct{}
	wg   sync.WaitGroup
}

// maxInFlight bounds the payloads awaiting an acknowledgement; ticks
// beyond it are skipped (and counted) rather than piling up.
const maxInFlight = 2048

// newPublisher makes a publisher of payloads padded to about padBytes.
func newPublisher(c *cluster, hub string, rate, padBytes int) *publisher {
	return &publisher{c: c, hub: hub, rate: rate, pad: strings.Repeat("p", padBytes), retryFor: 90 * time.Second,
		sent: map[string]bool{}, acked: map[string]uint64{}}
}

// start runs the pacer until halt.
func (p *publisher) start() {
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(p.rate))
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			if p.inFlight.Load() >= maxInFlight {
				p.skipped.Add(1)
				continue
			}
			id := "m" + strconv.FormatUint(p.seq.Add(1), 10)
			p.mu.Lock()
			p.sent[id] = true
			p.mu.Unlock()
			if n := p.inFlight.Add(1); n > p.peak.Load() {
				p.peak.Store(n) // only the pacer raises it
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.inFlight.Add(-1)
				p.publishOne(id)
			}()
		}
	}()
}

// halt stops the pacer and waits for every pending payload to be
// acknowledged or given up.
func (p *publisher) halt() {
	close(p.stop)
	p.wg.Wait()
}

// abort stops the pacer and makes pending payloads give up at once (a
// test that failed half way).
func (p *publisher) abort() {
	p.aborted.Store(true)
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// pickNode is the next node that is up, or nil.
func (p *publisher) pickNode() *node {
	nodes := p.c.nodes
	start := p.next.Add(1)
	for i := range len(nodes) {
		n := nodes[(start+uint64(i))%uint64(len(nodes))]
		if up, _ := n.liveness(); up {
			return n
		}
	}
	return nil
}

// publishOne sends payload id until it is acknowledged.
func (p *publisher) publishOne(id string) {
	body, err := json.Marshal(map[string]any{"target": "chaos", "arguments": []string{id, p.pad}})
	if err != nil {
		panic(err)
	}
	deadline := time.Now().Add(p.retryFor)
	last := "no node was up"
	for attempt := 0; time.Now().Before(deadline) && !p.aborted.Load(); attempt++ {
		if attempt > 0 {
			time.Sleep(min(25*time.Millisecond<<min(attempt-1, 4), 250*time.Millisecond)) // 25 ms doubling, up to 250 ms
		}
		n := p.pickNode()
		if n == nil {
			continue
		}
		p.attempts.Add(1)
		if attempt > 0 {
			p.retries.Add(1)
		}
		code, header, resp, err := get(clientHTTP, http.MethodPost, n.url("/api/v1/hubs/"+p.hub), body,
			http.Header{"Idempotency-Key": {id}})
		switch {
		case err != nil:
			last = fmt.Sprintf("via %s: %v", n, err)
		case code == http.StatusAccepted:
			p.acknowledge(id, n, header, resp)
			return
		case code == http.StatusServiceUnavailable || code == http.StatusInsufficientStorage ||
			code == http.StatusBadGateway || code == http.StatusGatewayTimeout:
			last = fmt.Sprintf("via %s: %d %s", n, code, strings.TrimSpace(string(resp)))
		default:
			p.fail("%s via %s: %d %s, want 202 or a retryable status", id, n, code, strings.TrimSpace(string(resp)))
			return
		}
	}
	p.mu.Lock()
	p.failed = append(p.failed, fmt.Sprintf("%s (last: %s)", id, last))
	p.mu.Unlock()
}

// acknowledge records a 202: its index must be in the body and in
// Backplane-Index alike, and not 0.
func (p *publisher) acknowledge(id string, n *node, header http.Header, resp []byte) {
	var ack struct {
		Index *uint64 `json:"index"`
	}
	if err := json.Unmarshal(resp, &ack); err != nil || ack.Index == nil || *ack.Index == 0 {
		p.fail("%s via %s: 202 with body %q, want {\"index\": N > 0}", id, n, resp)
		return
	}
	if h := header.Get("Backplane-Index"); h != strconv.FormatUint(*ack.Index, 10) {
		p.fail("%s via %s: body index %d but Backplane-Index %q", id, n, *ack.Index, h)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked[id] = *ack.Index
	p.ackedAt = append(p.ackedAt, time.Now())
}

func (p *publisher) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

// ackCount is the number of payloads acknowledged so far.
func (p *publisher) ackCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// maxIndex is the highest acknowledged index.
func (p *publisher) maxIndex() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m uint64
	for _, i := range p.acked {
		m = max(m, i)
	}
	return m
}

// longestPause is the longest time without an acknowledgement between
// from and to (the write unavailability around a fault), and when it
// began.
func (p *publisher) longestPause(from, to time.Time) (time.Duration, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, longest, began := from, time.Duration(0), from
	for _, at := range p.ackedAt {
		if at.Before(from) || at.After(to) {
			continue
		}
		if d := at.Sub(prev); d > longest {
			longest, began = d, prev
		}
		prev = at
	}
	if d := to.Sub(prev); d > longest {
		longest, began = d, prev
	}
	return longest, began
}

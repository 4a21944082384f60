package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// pollResume pages through GET /v1/hubs/{hub}/poll?after=N&limit=1000 on
// base until it has want messages; it returns how many it read.
func pollResume(ctx context.Context, hc *http.Client, base, hub string, after uint64, want int) (int, error) {
	got := 0
	for got < want {
		u := fmt.Sprintf("%s/v1/hubs/%s/poll?after=%d&limit=1000&timeout=10", base, hub, after)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return got, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return got, fmt.Errorf("poll: %w", err)
		}
		var page struct {
			Messages []json.RawMessage `json:"messages"`
			Next     uint64            `json:"next"`
			Reset    *struct{}         `json:"reset"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		switch {
		case err != nil || resp.StatusCode != http.StatusOK:
			return got, fmt.Errorf("poll after %d: status %d: %v", after, resp.StatusCode, err)
		case page.Reset != nil:
			return got, fmt.Errorf("poll after %d: reset: retention trimmed messages the reader missed", after)
		case len(page.Messages) == 0:
			return got, fmt.Errorf("poll after %d: nothing within 10s (%d of %d read)", after, got, want)
		}
		got += len(page.Messages)
		after = page.Next
	}
	return got, nil
}

// sseResume reads GET /v1/hubs/{hub}/stream?after=N on base until it has
// want messages; it returns how many it read.
func sseResume(ctx context.Context, hc *http.Client, base, hub string, after uint64, want int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := openStream(ctx, hc, base, hub, after)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	got := 0
	err = readSSE(bufio.NewReaderSize(resp.Body, 64<<10), func(uint64, []byte) {
		if got++; got == want {
			cancel() // ends the read
		}
	})
	if got < want {
		return got, fmt.Errorf("stream ended after %d of %d messages: %v", got, want, err)
	}
	return got, nil
}

// reconnect: publish N messages while a reader is away, then resume from
// the cursor on the nodes other than the leader they were published to,
// and time how long each native reader takes to have them all.
func (b *bench) reconnect(ctx context.Context, r *result) error {
	const hub = "bench_resume"
	cfg := b.cfg
	leader, err := b.cl.leader(ctx)
	if err != nil {
		return err
	}
	r.Params = map[string]any{"messages": cfg.resumeMsgs, "publishers": cfg.publishers, "size": cfg.size}
	r.Description = fmt.Sprintf("%s messages published to the leader (%d publishers), then readers resume from the cursor on the other nodes",
		human(float64(cfg.resumeMsgs)), cfg.publishers)
	var ack histogram
	ok, errs := &counter{name: "published"}, &counter{name: "errors"}
	w := b.start(ctx, r, ok, errs)
	defer w.stop(ctx)
	load := b.publishLoad(ctx, loadSpec{hub: hub, nodes: []int{leader}, workers: cfg.publishers,
		count: int64(cfg.resumeMsgs), ack: &ack, ok: ok, errs: errs})
	if load.committed != int64(cfg.resumeMsgs) {
		return fmt.Errorf("published %d of %d: %v", load.committed, cfg.resumeMsgs, load.firstError)
	}
	r.add("publish rate while the reader is away", float64(load.committed)/load.elapsed.Seconds(), "msg/s")
	hc := newHTTPClient(4)
	for i, rs := range []struct {
		name   string
		resume func(context.Context, *http.Client, string, string, uint64, int) (int, error)
	}{{"long poll, 1,000 per page", pollResume}, {"Server-Sent Events", sseResume}} {
		node := b.cl.nodes[(leader+1+i)%len(b.cl.nodes)]
		start := time.Now()
		got, err := rs.resume(ctx, hc, node.url, hub, load.minIndex-1, cfg.resumeMsgs)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", rs.name, node.id, err)
		}
		r.add(fmt.Sprintf("resume %s messages, %s on %s: time", human(float64(got)), rs.name, node.id), took.Seconds()*1000, "ms")
		r.add(fmt.Sprintf("resume %s: rate", rs.name), float64(got)/took.Seconds(), "msg/s")
	}
	return nil
}

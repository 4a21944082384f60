package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// resumer is a client that missed messages and catches up from its cursor
// on some node. The native cursor stream has two (long polling and SSE);
// a SignalR stateful-reconnect resumer (reconnect with the same connection
// token on another node, Sequence/Ack) can be added here once the server
// offers stateful reconnect.
type resumer interface {
	// name describes the client in the report.
	name() string
	// resume reads the hub's broadcasts after the cursor from base until
	// it has want messages, and returns how many it read.
	resume(ctx context.Context, hc *http.Client, base, hub string, after uint64, want int) (int, error)
}

// pollResumer pages through GET /v1/hubs/{hub}/poll?after=N&limit=1000.
type pollResumer struct{}

func (pollResumer) name() string { return "long poll, 1,000 per page" }

func (pollResumer) resume(ctx context.Context, hc *http.Client, base, hub string, after uint64, want int) (int, error) {
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
		if err != nil || resp.StatusCode != http.StatusOK {
			return got, fmt.Errorf("poll after %d: status %d: %v", after, resp.StatusCode, err)
		}
		if page.Reset != nil {
			return got, fmt.Errorf("poll after %d: reset: retention trimmed messages the reader missed", after)
		}
		if len(page.Messages) == 0 {
			return got, fmt.Errorf("poll after %d: nothing within 10s (%d of %d read)", after, got, want)
		}
		got += len(page.Messages)
		after = page.Next
	}
	return got, nil
}

// sseResumer reads GET /v1/hubs/{hub}/stream?after=N until it has them all.
type sseResumer struct{}

func (sseResumer) name() string { return "Server-Sent Events" }

func (sseResumer) resume(ctx context.Context, hc *http.Client, base, hub string, after uint64, want int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/hubs/%s/stream?after=%d", base, hub, after), nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("stream: status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	got := 0
	for got < want && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: reset"):
			return got, fmt.Errorf("stream after %d: reset: retention trimmed messages the reader missed", after)
		case strings.HasPrefix(line, "data: "):
			got++
		}
	}
	if got < want {
		return got, fmt.Errorf("stream ended after %d of %d messages: %v", got, want, sc.Err())
	}
	return got, nil
}

// reconnect: publish N messages while a reader is away, then resume from
// the cursor on other nodes than the one published to, and time how long
// each native reader takes to have them all.
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
	prog := startProgress(b.stderr, "reconnect", ok, errs)
	meas := b.startMeasure(ctx, r)
	load := b.publishLoad(ctx, loadSpec{hub: hub, nodes: []int{leader}, workers: cfg.publishers,
		count: int64(cfg.resumeMsgs), ack: &ack, ok: ok, errs: errs})
	prog.Stop()
	if load.committed != int64(cfg.resumeMsgs) {
		meas.stop(ctx)
		return fmt.Errorf("published %d of %d: %v", load.committed, cfg.resumeMsgs, load.firstError)
	}
	r.add("publish rate while the reader is away", float64(load.committed)/load.elapsed.Seconds(), "msg/s")
	cursor := load.minIndex - 1
	resumers := []resumer{pollResumer{}, sseResumer{}}
	hc := newHTTPClient(4)
	for i, rs := range resumers {
		node := b.cl.nodes[(leader+1+i%(len(b.cl.nodes)-1))%len(b.cl.nodes)]
		if len(b.cl.nodes) == 1 {
			node = b.cl.nodes[0]
		}
		start := time.Now()
		got, err := rs.resume(ctx, hc, node.url, hub, cursor, cfg.resumeMsgs)
		took := time.Since(start)
		if err != nil {
			meas.stop(ctx)
			return fmt.Errorf("%s on %s: %w", rs.name(), node.id, err)
		}
		r.add(fmt.Sprintf("resume %s messages, %s on %s: time", human(float64(got)), rs.name(), node.id), took.Seconds()*1000, "ms")
		r.add(fmt.Sprintf("resume %s: rate", rs.name()), float64(got)/took.Seconds(), "msg/s")
	}
	meas.stop(ctx)
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// histogram is a lock-free log-linear latency histogram with microsecond
// resolution: 32 sub-buckets per power of two, so a reported percentile is
// within ~3% of the true value. Record is safe from many goroutines.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	sumUS   atomic.Uint64
	maxUS   atomic.Uint64
}

const histBuckets = 64 + 40*32

func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	shift := bits.Len64(us) - 6
	i := 64 + (shift-1)*32 + int(us>>uint(shift)) - 32
	return min(i, histBuckets-1)
}

// bucketMid is the middle of bucket i, in microseconds.
func bucketMid(i int) float64 {
	if i < 64 {
		return float64(i) + 0.5
	}
	j := i - 64
	shift := uint(j/32 + 1)
	low := uint64(j%32+32) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

// Record adds one observation; negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.buckets[bucketOf(us)].Add(1)
	h.count.Add(1)
	h.sumUS.Add(us)
	storeMax(&h.maxUS, us)
}

// histSnapshot is a histogram's content, to send it between processes:
// its non-empty buckets as [index, count] pairs.
type histSnapshot struct {
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	Count   uint64      `json:"count"`
	SumUS   uint64      `json:"sum_us"`
	MaxUS   uint64      `json:"max_us"`
}

// snapshot copies the histogram (while nothing records, for an exact
// copy).
func (h *histogram) snapshot() histSnapshot {
	s := histSnapshot{Count: h.count.Load(), SumUS: h.sumUS.Load(), MaxUS: h.maxUS.Load()}
	for i := range h.buckets {
		if n := h.buckets[i].Load(); n > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), n})
		}
	}
	return s
}

// merge adds a snapshot's observations, as if they had been recorded
// here; a bucket index out of range is an error and merges nothing.
func (h *histogram) merge(s histSnapshot) error {
	for _, b := range s.Buckets {
		if b[0] >= histBuckets {
			return fmt.Errorf("histogram bucket %d out of range", b[0])
		}
	}
	for _, b := range s.Buckets {
		h.buckets[b[0]].Add(b[1])
	}
	h.count.Add(s.Count)
	h.sumUS.Add(s.SumUS)
	storeMax(&h.maxUS, s.MaxUS)
	return nil
}

// latency summarises a histogram in milliseconds.
type latency struct {
	Count  uint64  `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms,omitempty"`
	// Interpolated: read from a node's Prometheus buckets, percentiles
	// interpolated within a bucket and no maximum.
	Interpolated bool `json:"interpolated,omitempty"`
}

// Summary computes the percentiles.
func (h *histogram) Summary() latency {
	n := h.count.Load()
	if n == 0 {
		return latency{}
	}
	l := latency{Count: n, MeanMS: float64(h.sumUS.Load()) / float64(n) / 1000, MaxMS: float64(h.maxUS.Load()) / 1000}
	targets := []struct {
		q   float64
		dst *float64
	}{{0.50, &l.P50MS}, {0.99, &l.P99MS}, {0.999, &l.P999MS}}
	var seen uint64
	t := 0
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		for t < len(targets) && float64(seen) >= targets[t].q*float64(n) {
			*targets[t].dst = min(bucketMid(i)/1000, l.MaxMS)
			t++
		}
	}
	return l
}

func (l latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	if l.Interpolated {
		return fmt.Sprintf("p50 %s  p99 %s  mean %s ms (n=%d)", fmtMS(l.P50MS), fmtMS(l.P99MS), fmtMS(l.MeanMS), l.Count)
	}
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s ms (n=%d)",
		fmtMS(l.P50MS), fmtMS(l.P99MS), fmtMS(l.P999MS), fmtMS(l.MaxMS), l.Count)
}

func fmtMS(ms float64) string {
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

// counter is a named running count shown in the progress lines.
type counter struct {
	name string
	v    atomic.Int64
}

func (c *counter) Add(n int64) { c.v.Add(n) }
func (c *counter) Load() int64 { return c.v.Load() }

// progress prints one line per second to stderr while a phase runs: each
// counter's total and its rate over the last second.
type progress struct {
	w        io.Writer
	name     string
	counters []*counter
	stop     chan struct{}
	done     sync.WaitGroup
}

// startProgress starts printing; Stop ends it.
func startProgress(w io.Writer, name string, counters ...*counter) *progress {
	p := &progress{w: w, name: name, counters: counters, stop: make(chan struct{})}
	p.done.Add(1)
	go p.run()
	return p
}

func (p *progress) run() {
	defer p.done.Done()
	start := time.Now()
	last := make([]int64, len(p.counters))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			var b strings.Builder
			fmt.Fprintf(&b, "  [%s %4.0fs]", p.name, now.Sub(start).Seconds())
			for i, c := range p.counters {
				v := c.Load()
				fmt.Fprintf(&b, "  %s %s (%s/s)", c.name, human(float64(v)), human(float64(v-last[i])))
				last[i] = v
			}
			fmt.Fprintln(p.w, b.String())
		}
	}
}

// Stop ends the progress lines.
func (p *progress) Stop() {
	close(p.stop)
	p.done.Wait()
}

// poll checks cond every interval until it reports done, and fails with
// cond's last explanation when ctx ends or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (done bool, last string)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, last := cond()
		switch {
		case done:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("not within %s: %s", timeout, last)
		}
		time.Sleep(interval)
	}
}

// human formats a count with thousands separators, or with one decimal
// below 100 when it has a fraction.
func human(v float64) string {
	if v < 100 && v != float64(int64(v)) {
		return fmt.Sprintf("%.1f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

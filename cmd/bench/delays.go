package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// What the benchmark reads of the nodes' /metrics: the leader's commit
// time, and every node's delay histograms, which both start at the
// proposer's stamp, taken by the leader just before raft.Apply.
const (
	applyDelay    = "backplane_apply_delay_seconds"    // → the entry applied to this node's store
	dispatchDelay = "backplane_dispatch_delay_seconds" // → the message queued for this node's sockets
	commitSeconds = "backplane_commit_seconds"         // raft.Apply → applied on the leader
)

// metricFamilies is a node's /metrics, parsed by the Prometheus text
// parser: each metric family by name.
type metricFamilies map[string]*dto.MetricFamily

// parseMetrics reads a text exposition; a line it cannot read fails the
// whole text, as it fails a Prometheus scrape.
func parseMetrics(text []byte) (metricFamilies, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return mfs, nil
}

// scrapeMetrics reads and parses a node's /metrics.
func (c *cluster) scrapeMetrics(ctx context.Context, n *benchNode) (metricFamilies, error) {
	b, err := c.get(ctx, n.url+"/metrics")
	if err != nil {
		return nil, err
	}
	mfs, err := parseMetrics(b)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", n.url, err)
	}
	return mfs, nil
}

// samples are a node's counters, gauges and untyped metrics without
// labels, by name, to their values (go_goroutines, go_memstats_*…).
type samples map[string]float64

// scrape reads a node's /metrics for its samples.
func (c *cluster) scrape(ctx context.Context, n *benchNode) (samples, error) {
	mfs, err := c.scrapeMetrics(ctx, n)
	if err != nil {
		return nil, err
	}
	return mfs.samples(), nil
}

// samples returns the families' values without labels; a value repeated
// under one name adds up.
func (f metricFamilies) samples() samples {
	out := samples{}
	for name, mf := range f {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch {
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// promHistogram is a Prometheus histogram: bucket upper bounds in
// ascending order, the last +Inf, with cumulative counts.
type promHistogram struct {
	bounds []float64
	counts []float64 // cumulative: counts[i] observations ≤ bounds[i]
	sum    float64
	count  float64
}

// histogram returns the classic histogram name, or nil if it has no
// buckets. Only its series without labels count (the nodes' histograms
// have none), their buckets added by upper bound.
func (f metricFamilies) histogram(name string) *promHistogram {
	mf := f[name]
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		return nil
	}
	h := &promHistogram{}
	byBound := map[float64]float64{}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) > 0 {
			continue
		}
		ph := m.GetHistogram()
		h.sum += ph.GetSampleSum()
		// A count is an integer or, if any count of the histogram is not,
		// a float; the other field is then 0.
		h.count += float64(ph.GetSampleCount()) + ph.GetSampleCountFloat()
		for _, b := range ph.GetBucket() {
			byBound[b.GetUpperBound()] += float64(b.GetCumulativeCount()) + b.GetCumulativeCountFloat()
		}
	}
	if len(byBound) == 0 {
		return nil
	}
	for b := range byBound {
		h.bounds = append(h.bounds, b)
	}
	slices.Sort(h.bounds)
	for _, b := range h.bounds {
		h.counts = append(h.counts, byBound[b])
	}
	return h
}

// sub returns h − before: the observations made between two scrapes. A nil
// before counts as empty (a series created after the first scrape).
func (h *promHistogram) sub(before *promHistogram) (*promHistogram, error) {
	d := &promHistogram{bounds: h.bounds, counts: slices.Clone(h.counts), sum: h.sum, count: h.count}
	if before == nil {
		return d, nil
	}
	if !slices.Equal(h.bounds, before.bounds) {
		return nil, errors.New("bucket bounds changed between scrapes")
	}
	d.sum -= before.sum
	d.count -= before.count
	for i := range d.counts {
		d.counts[i] -= before.counts[i]
		if d.counts[i] < 0 {
			return nil, errors.New("counts went down between scrapes (node restarted?)")
		}
	}
	return d, nil
}

// add adds o's observations to h; both must have the same buckets.
func (h *promHistogram) add(o *promHistogram) error {
	if !slices.Equal(h.bounds, o.bounds) {
		return errors.New("different bucket bounds")
	}
	h.sum += o.sum
	h.count += o.count
	for i := range h.counts {
		h.counts[i] += o.counts[i]
	}
	return nil
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linear interpolation inside the bucket holding the rank, from 0
// for the first bucket; a rank in the +Inf bucket gives the highest finite
// bound. NaN without observations or without a +Inf bucket.
func (h *promHistogram) quantile(q float64) float64 {
	n := len(h.bounds)
	if n < 2 || !math.IsInf(h.bounds[n-1], 1) || h.counts[n-1] <= 0 {
		return math.NaN()
	}
	rank := q * h.counts[n-1]
	b := 0 // the first bucket whose cumulative count reaches the rank
	for b < n-1 && h.counts[b] < rank {
		b++
	}
	if b >= n-1 {
		return h.bounds[n-2]
	}
	if b == 0 && h.bounds[0] <= 0 {
		return h.bounds[0]
	}
	start, end, count := 0.0, h.bounds[b], h.counts[b]
	if b > 0 {
		start = h.bounds[b-1]
		count -= h.counts[b-1]
		rank -= h.counts[b-1]
	}
	return start + (end-start)*rank/count
}

// latency summarises a histogram of seconds in milliseconds. It has no
// maximum: the buckets do not keep one.
func (h *promHistogram) latency() latency {
	if h == nil || h.count <= 0 || h.counts[len(h.counts)-1] <= 0 {
		return latency{}
	}
	return latency{Count: uint64(h.count), MeanMS: 1000 * h.sum / h.count, P50MS: 1000 * h.quantile(0.50),
		P99MS: 1000 * h.quantile(0.99), P999MS: 1000 * h.quantile(0.999), Interpolated: true}
}

// metricsMeter scrapes every node's /metrics before and after a phase.
type metricsMeter struct {
	c      *cluster
	leader int // -1: none at the start
	start  []metricFamilies
	errs   []error
}

func (c *cluster) startMetricsMeter(ctx context.Context) *metricsMeter {
	m := &metricsMeter{c: c, leader: -1, start: make([]metricFamilies, len(c.nodes)), errs: make([]error, len(c.nodes))}
	if li, err := c.leader(ctx); err == nil {
		m.leader = li
	}
	for i, n := range c.nodes {
		m.start[i], m.errs[i] = c.scrapeMetrics(ctx, n)
	}
	return m
}

// phase is what a metricsMeter found: each node's histograms' differences
// (nil for a node not read), the leader at the start, and the reasons for
// anything left out.
type phase struct {
	c      *cluster
	leader int
	diffs  []map[string]*promHistogram
	notes  []string
}

// Stop scrapes again and takes each histogram's difference.
func (m *metricsMeter) Stop(ctx context.Context) phase {
	p := phase{c: m.c, leader: m.leader, diffs: make([]map[string]*promHistogram, len(m.c.nodes))}
	if m.leader < 0 {
		p.notes = append(p.notes, "node metrics skipped: no leader at the start of the phase")
		return p
	}
	if li, err := m.c.leader(ctx); err == nil && li != m.leader {
		p.notes = append(p.notes, fmt.Sprintf("node metrics: the leader changed from %s to %s during the phase",
			m.c.nodes[m.leader].id, m.c.nodes[li].id))
	}
	for i, n := range m.c.nodes {
		end, err := m.c.scrapeMetrics(ctx, n)
		if err == nil {
			err = m.errs[i]
		}
		if err != nil {
			p.notes = append(p.notes, fmt.Sprintf("metrics of %s not read: %v", n.id, err))
			continue
		}
		p.diffs[i] = map[string]*promHistogram{}
		for _, name := range []string{applyDelay, dispatchDelay, commitSeconds} {
			if h := end.histogram(name); h != nil {
				d, err := h.sub(m.start[i].histogram(name))
				if err != nil {
					p.notes = append(p.notes, fmt.Sprintf("%s of %s skipped: %v", name, n.id, err))
					continue
				}
				p.diffs[i][name] = d
			}
		}
	}
	return p
}

// addCommit reports the leader's Raft entries per second and the mean
// time one spent from raft.Apply to the leader's apply.
func (p phase) addCommit(r *result, secs float64) {
	if p.leader < 0 || p.diffs[p.leader] == nil {
		return
	}
	h := p.diffs[p.leader][commitSeconds]
	if h == nil || h.count <= 0 {
		return
	}
	r.add("Raft entries/s proposed by the leader", h.count/secs, "entry/s")
	r.add("leader raft.Apply → applied, mean per entry", 1000*h.sum/h.count, "ms")
}

// addDelays adds the stamp → lines, each name prefixed: the leader's
// alone and the followers' merged.
func (p phase) addDelays(r *result, prefix string) {
	for _, n := range p.notes {
		r.addNote("%s", n)
	}
	if p.leader < 0 {
		return
	}
	for _, s := range []struct{ metric, what string }{{applyDelay, "applied"}, {dispatchDelay, "queued to sockets"}} {
		var followers *promHistogram
		for i, d := range p.diffs {
			switch h := d[s.metric]; {
			case h == nil:
			case i == p.leader:
				r.lat(prefix+"stamp → "+s.what+", leader", h.latency())
			case followers == nil:
				followers = h
			default:
				if err := followers.add(h); err != nil {
					r.addNote("%s of %s left out of the followers': %v", s.metric, p.c.nodes[i].id, err)
				}
			}
		}
		r.lat(prefix+"stamp → "+s.what+", followers", followers.latency())
	}
	r.addNote("stages: the publish → lines are timed by the client; the stamp is taken by the leader's proposer just before raft.Apply " +
		"(stamp → applied/queued are the nodes' histograms, percentiles interpolated within their buckets), so (publish → delivery) − (stamp → queued to sockets) " +
		"≈ HTTP + proposer queueing before the stamp + socket write and client read after queuing")
}

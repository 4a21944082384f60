package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The nodes' delay histograms: both start at the proposer's stamp, taken
// by the leader just before raft.Apply.
const (
	applyDelay    = "backplane_apply_delay_seconds"    // → the entry applied to this node's store
	dispatchDelay = "backplane_dispatch_delay_seconds" // → the message queued for this node's sockets
)

// promHistogram is a Prometheus histogram as read from /metrics: bucket
// upper bounds in ascending order, the last +Inf, with cumulative counts.
type promHistogram struct {
	bounds []float64
	counts []float64 // cumulative: counts[i] observations ≤ bounds[i]
	sum    float64
	count  float64
}

// parseHistograms reads the named classic histograms from a Prometheus
// text exposition. Series of one name with labels other than le are added
// together. A name without buckets is absent from the result.
func parseHistograms(text string, names ...string) map[string]*promHistogram {
	type acc struct {
		buckets    map[float64]float64
		sum, count float64
	}
	accs := map[string]*acc{}
	for _, name := range names {
		accs[name] = &acc{buckets: map[float64]float64{}}
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		series, labels, rest := splitSeries(line)
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		for _, name := range names {
			a := accs[name]
			switch series {
			case name + "_bucket":
				le, ok := labelValue(labels, "le")
				if !ok {
					continue
				}
				bound, err := strconv.ParseFloat(le, 64)
				if err != nil {
					continue
				}
				a.buckets[bound] += v
			case name + "_sum":
				a.sum += v
			case name + "_count":
				a.count += v
			}
		}
	}
	out := map[string]*promHistogram{}
	for name, a := range accs {
		if len(a.buckets) == 0 {
			continue
		}
		h := &promHistogram{sum: a.sum, count: a.count}
		for b := range a.buckets {
			h.bounds = append(h.bounds, b)
		}
		slices.Sort(h.bounds)
		for _, b := range h.bounds {
			h.counts = append(h.counts, a.buckets[b])
		}
		out[name] = h
	}
	return out
}

// splitSeries splits an exposition line into the series name, the text
// inside its braces (empty without labels) and the rest: value and
// optional timestamp.
func splitSeries(line string) (name, labels, rest string) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return line, "", ""
	}
	if line[i] != '{' {
		return line[:i], "", line[i:]
	}
	inQuote, escaped := false, false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return line[:i], line[i+1 : j], line[j+1:]
		}
	}
	return line[:i], "", ""
}

// labelValue finds name="value" in a label list (values without escapes,
// as le always is).
func labelValue(labels, name string) (string, bool) {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == name && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			return v[1 : len(v)-1], true
		}
	}
	return "", false
}

func (h *promHistogram) clone() *promHistogram {
	return &promHistogram{bounds: slices.Clone(h.bounds), counts: slices.Clone(h.counts), sum: h.sum, count: h.count}
}

// sub returns h − before: the observations made between two scrapes. A nil
// before counts as empty (a series created after the first scrape).
func (h *promHistogram) sub(before *promHistogram) (*promHistogram, error) {
	d := h.clone()
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
	if d.count < 0 {
		return nil, errors.New("count went down between scrapes (node restarted?)")
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

// delayMeter scrapes every node's delay histograms before and after a
// phase.
type delayMeter struct {
	c      *cluster
	leader int
	start  []map[string]*promHistogram // per node; nil: not scraped
	errs   []error
}

func (c *cluster) scrapeDelays(ctx context.Context, n *benchNode) (map[string]*promHistogram, error) {
	b, err := c.get(ctx, n.url+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseHistograms(string(b), applyDelay, dispatchDelay), nil
}

func (c *cluster) startDelayMeter(ctx context.Context) *delayMeter {
	m := &delayMeter{c: c, leader: -1, start: make([]map[string]*promHistogram, len(c.nodes)), errs: make([]error, len(c.nodes))}
	if li, err := c.leader(ctx); err == nil {
		m.leader = li
	}
	for i, n := range c.nodes {
		m.start[i], m.errs[i] = c.scrapeDelays(ctx, n)
	}
	return m
}

// delayLine is one reported delay.
type delayLine struct {
	name string
	lat  latency
}

// delayReport is what a delayMeter found: the lines to report and the
// reasons for any it left out.
type delayReport struct {
	lines []delayLine
	notes []string
}

// Stop scrapes again and summarises each histogram's difference: the
// leader's alone and the followers' merged.
func (m *delayMeter) Stop(ctx context.Context) delayReport {
	var rep delayReport
	if m.leader < 0 {
		rep.notes = append(rep.notes, "delay histograms skipped: no leader at the start of the phase")
		return rep
	}
	if li, err := m.c.leader(ctx); err == nil && li != m.leader {
		rep.notes = append(rep.notes, fmt.Sprintf("delay histograms: the leader changed from %s to %s during the phase",
			m.c.nodes[m.leader].id, m.c.nodes[li].id))
	}
	diffs := make([]map[string]*promHistogram, len(m.c.nodes))
	for i, n := range m.c.nodes {
		end, err := m.c.scrapeDelays(ctx, n)
		if err == nil {
			err = m.errs[i]
		}
		if err != nil {
			rep.notes = append(rep.notes, fmt.Sprintf("delay histograms of %s not read: %v", n.id, err))
			continue
		}
		diffs[i] = map[string]*promHistogram{}
		for _, name := range []string{applyDelay, dispatchDelay} {
			if end[name] == nil {
				continue
			}
			d, err := end[name].sub(m.start[i][name])
			if err != nil {
				rep.notes = append(rep.notes, fmt.Sprintf("%s of %s skipped: %v", name, n.id, err))
				continue
			}
			diffs[i][name] = d
		}
	}
	var missing []string
	for _, s := range []struct{ metric, what string }{{applyDelay, "applied"}, {dispatchDelay, "queued to sockets"}} {
		var lacking []string
		if d := diffs[m.leader]; d != nil {
			if h := d[s.metric]; h != nil {
				rep.lines = append(rep.lines, delayLine{"stamp → " + s.what + ", leader", h.latency()})
			} else {
				lacking = append(lacking, m.c.nodes[m.leader].id)
			}
		}
		var followers *promHistogram
		for i, d := range diffs {
			if i == m.leader || d == nil {
				continue
			}
			h := d[s.metric]
			switch {
			case h == nil:
				lacking = append(lacking, m.c.nodes[i].id)
			case followers == nil:
				followers = h.clone()
			default:
				if err := followers.add(h); err != nil {
					rep.notes = append(rep.notes, fmt.Sprintf("%s of %s left out of the followers': %v", s.metric, m.c.nodes[i].id, err))
				}
			}
		}
		if followers != nil {
			rep.lines = append(rep.lines, delayLine{"stamp → " + s.what + ", followers", followers.latency()})
		}
		if len(lacking) > 0 {
			missing = append(missing, fmt.Sprintf("%s (%s)", s.metric, strings.Join(lacking, ", ")))
		}
	}
	if len(missing) > 0 {
		rep.notes = append(rep.notes, "nodes without the delay histograms (older binary?), left out: "+strings.Join(missing, "; "))
	}
	return rep
}

// addTo adds the lines, each name prefixed, and notes to a scenario, with
// one note explaining the stages when there is any line.
func (d delayReport) addTo(r *scenarioResult, prefix string, remote bool) {
	for _, l := range d.lines {
		r.lat(prefix+l.name, l.lat)
	}
	for _, n := range d.notes {
		r.addNote("%s", n)
	}
	if len(d.lines) == 0 {
		return
	}
	r.addNote("stages: the publish → lines are timed by the client; the stamp is taken by the leader's proposer just before raft.Apply " +
		"(stamp → applied/queued are the nodes' histograms, percentiles interpolated within their buckets), so (publish → delivery) − (stamp → queued to sockets) " +
		"≈ HTTP + proposer queueing before the stamp + socket write and client read after queuing")
	if remote {
		r.addNote("the nodes are remote: the followers' stamp → figures include the difference between their clocks and the leader's")
	}
}

// remote reports whether the cluster's nodes were not started here (so
// they may not share a clock).
func (c *cluster) remote() bool {
	for _, n := range c.nodes {
		if n.dataDir == "" {
			return true
		}
	}
	return false
}

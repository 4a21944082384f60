package main

import (
	"fmt"
	"math"
	"testing"
)

func hist(bounds, counts []float64, sum float64) *promHistogram {
	return &promHistogram{bounds: bounds, counts: counts, sum: sum, count: counts[len(counts)-1]}
}

var inf = math.Inf(1)

func TestQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4, inf}
	tests := []struct {
		name   string
		counts []float64
		q      float64
		want   float64
	}{
		// 10 in (0,1], 20 in (1,2], 10 in (2,4].
		{"middle of the second bucket", []float64{10, 30, 40, 40}, 0.5, 1.5},
		{"end of the first bucket", []float64{10, 30, 40, 40}, 0.25, 1},
		{"inside the first bucket, from 0", []float64{10, 30, 40, 40}, 0.1, 0.4},
		{"p99 in the third bucket", []float64{10, 30, 40, 40}, 0.99, 2 + 2*9.6/10},
		// 10 more above 4: a rank there gives the highest finite bound.
		{"+Inf bucket", []float64{10, 30, 40, 50}, 0.99, 4},
		{"just below the +Inf bucket", []float64{10, 30, 40, 50}, 0.8, 4},
		{"empty buckets are skipped", []float64{0, 0, 8, 8}, 0.5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hist(bounds, tt.counts, 0)
			if got := h.quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("quantile(%v) of %v = %v, want %v", tt.q, tt.counts, got, tt.want)
			}
		})
	}
	if got := hist(bounds, []float64{0, 0, 0, 0}, 0).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("empty histogram: quantile %v, want NaN", got)
	}
	if got := hist([]float64{1, 2}, []float64{1, 2}, 0).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("no +Inf bucket: quantile %v, want NaN", got)
	}
}

func TestHistogramLatency(t *testing.T) {
	h := hist([]float64{0.001, 0.002, 0.004, inf}, []float64{10, 30, 40, 40}, 0.06)
	l := h.latency()
	want := latency{Count: 40, MeanMS: 1.5, P50MS: 1.5, P99MS: 3.92, P999MS: 3.992, Interpolated: true}
	if math.Abs(l.MeanMS-want.MeanMS) > 1e-9 || math.Abs(l.P50MS-want.P50MS) > 1e-9 || math.Abs(l.P99MS-want.P99MS) > 1e-9 ||
		math.Abs(l.P999MS-want.P999MS) > 1e-9 || l.Count != want.Count || !l.Interpolated || l.MaxMS != 0 {
		t.Errorf("latency() = %+v, want %+v", l, want)
	}
	if s := l.String(); s != "p50 1.50  p99 3.92  mean 1.50 ms (n=40)" {
		t.Errorf("String() = %q", s)
	}
	if l := hist([]float64{1, inf}, []float64{0, 0}, 0).latency(); l != (latency{}) {
		t.Errorf("empty histogram: %+v, want no samples", l)
	}
	if l := (*promHistogram)(nil).latency(); l != (latency{}) {
		t.Errorf("nil histogram: %+v, want no samples", l)
	}
}

// sampleMetrics is an exposition as a node writes it, with a labelled
// histogram series, a timestamp and a label value holding a space and a
// brace added.
const sampleMetrics = `# HELP backplane_apply_delay_seconds Time from the proposer's stamp.
# TYPE backplane_apply_delay_seconds histogram
backplane_apply_delay_seconds_bucket{le="0.00025"} 3
backplane_apply_delay_seconds_bucket{le="0.0005"} 7
backplane_apply_delay_seconds_bucket{le="0.001"} 9
backplane_apply_delay_seconds_bucket{le="+Inf"} 10
backplane_apply_delay_seconds_sum 0.0123
backplane_apply_delay_seconds_count 10
backplane_apply_delay_seconds_bucket{node="other",le="0.00025"} 100
backplane_apply_delay_seconds_bucket{node="other",le="0.0005"} 100
backplane_apply_delay_seconds_bucket{node="other",le="0.001"} 100
backplane_apply_delay_seconds_bucket{node="other",le="+Inf"} 100
backplane_apply_delay_seconds_sum{node="other"} 1
backplane_apply_delay_seconds_count{node="other"} 100
# HELP backplane_commit_seconds Time from proposing an entry to its local apply (leader).
# TYPE backplane_commit_seconds histogram
backplane_commit_seconds_bucket{le="0.0005"} 1
backplane_commit_seconds_bucket{le="+Inf"} 1
backplane_commit_seconds_sum 0.0004
backplane_commit_seconds_count 1 1700000000000
# HELP backplane_publishes_total Publishes answered, by outcome.
# TYPE backplane_publishes_total counter
backplane_publishes_total{outcome="accepted"} 5
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 4.087808e+06
weird{path="a b} c"} 7
`

func TestParseMetrics(t *testing.T) {
	mfs, err := parseMetrics([]byte(sampleMetrics))
	if err != nil {
		t.Fatal(err)
	}
	s := mfs.samples()
	if s["go_goroutines"] != 42 || s["go_memstats_heap_inuse_bytes"] != 4087808 || len(s) != 2 {
		t.Errorf("samples %v: want go_goroutines 42 and the heap in use, and no labelled series", s)
	}
	if w := mfs["weird"].GetMetric(); len(w) != 1 || w[0].GetLabel()[0].GetValue() != "a b} c" || w[0].GetUntyped().GetValue() != 7 {
		t.Errorf("a label value with a space and a brace: %v", w)
	}
	a := mfs.histogram(applyDelay)
	wantA := hist([]float64{0.00025, 0.0005, 0.001, inf}, []float64{3, 7, 9, 10}, 0.0123)
	if fmt.Sprint(a) != fmt.Sprint(wantA) {
		t.Errorf("apply: %+v, want %+v (the labelled series left out)", a, wantA)
	}
	c := mfs.histogram(commitSeconds)
	wantC := hist([]float64{0.0005, inf}, []float64{1, 1}, 0.0004)
	if fmt.Sprint(c) != fmt.Sprint(wantC) {
		t.Errorf("commit: %+v, want %+v (the count without its timestamp)", c, wantC)
	}
	if h := mfs.histogram(dispatchDelay); h != nil {
		t.Errorf("a histogram that is not there: %+v", h)
	}
	if h := mfs.histogram("go_goroutines"); h != nil {
		t.Errorf("a gauge read as a histogram: %+v", h)
	}
	if _, err := parseMetrics([]byte("go_goroutines forty-two\n")); err == nil {
		t.Error("a value that is not a number: no error")
	}
}

func TestHistogramSubAdd(t *testing.T) {
	bounds := []float64{1, 2, inf}
	before := hist(bounds, []float64{1, 2, 3}, 3)
	after := hist(bounds, []float64{4, 8, 9}, 12)
	d, err := after.sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if want := hist(bounds, []float64{3, 6, 6}, 9); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("after − before = %+v, want %+v", d, want)
	}
	if fmt.Sprint(after) != fmt.Sprint(hist(bounds, []float64{4, 8, 9}, 12)) {
		t.Errorf("sub changed its receiver: %+v", after)
	}
	if d, err := after.sub(nil); err != nil || fmt.Sprint(d) != fmt.Sprint(after) {
		t.Errorf("after − nothing = %+v, %v; want after", d, err)
	}
	if _, err := before.sub(after); err == nil {
		t.Error("counts going down: no error")
	}
	if _, err := after.sub(hist([]float64{1, inf}, []float64{1, 1}, 1)); err == nil {
		t.Error("different bounds: no error")
	}
	if err := d.add(before); err != nil {
		t.Fatal(err)
	}
	if want := hist(bounds, []float64{4, 8, 9}, 12); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("merged = %+v, want %+v", d, want)
	}
	if err := d.add(hist([]float64{1, inf}, []float64{1, 1}, 1)); err == nil {
		t.Error("merging different bounds: no error")
	}
}

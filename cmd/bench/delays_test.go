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

const sampleMetrics = `# HELP backplane_apply_delay_seconds Time from the proposer's stamp.
# TYPE backplane_apply_delay_seconds histogram
backplane_apply_delay_seconds_bucket{le="0.00025"} 3
backplane_apply_delay_seconds_bucket{le="0.0005"} 7
backplane_apply_delay_seconds_bucket{le="0.001"} 9
backplane_apply_delay_seconds_bucket{le="+Inf"} 10
backplane_apply_delay_seconds_sum 0.0123
backplane_apply_delay_seconds_count 10
backplane_commit_seconds_bucket{le="0.0005"} 1
backplane_commit_seconds_bucket{le="+Inf"} 1
backplane_commit_seconds_sum 0.0004
backplane_commit_seconds_count 1 1700000000000
go_goroutines 42
weird{path="a b} c"} 7
`

func TestParseSamples(t *testing.T) {
	s := parseSamples(sampleMetrics)
	if s["go_goroutines"] != 42 || s[commitSeconds+"_count"] != 1 || s[`weird{path="a b} c"}`] != 7 {
		t.Errorf("samples %v: want go_goroutines 42, the count without its timestamp, a label value with spaces", s)
	}
	a := s.histogram(applyDelay)
	wantA := hist([]float64{0.00025, 0.0005, 0.001, inf}, []float64{3, 7, 9, 10}, 0.0123)
	if fmt.Sprint(a) != fmt.Sprint(wantA) {
		t.Errorf("apply: %+v, want %+v", a, wantA)
	}
	if h := s.histogram(dispatchDelay); h != nil {
		t.Errorf("a histogram that is not there: %+v", h)
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

package main

import (
	"math"
	"testing"
	"time"
)

// TestHistogramSummary records 1..1000 ms: each percentile within the
// histogram's ~3%, the mean and maximum exact; a snapshot merged into
// another histogram gives the same summary.
func TestHistogramSummary(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	l := h.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50MS, 500}, {"p99", l.P99MS, 990}, {"p99.9", l.P999MS, 999}} {
		if math.Abs(c.got-c.want) > 0.03*c.want {
			t.Errorf("%s = %v ms, want %v ± 3%%", c.name, c.got, c.want)
		}
	}
	if l.Count != 1000 || l.MeanMS != 500.5 || l.MaxMS != 1000 {
		t.Errorf("count %d, mean %v, max %v: want 1000, 500.5, 1000", l.Count, l.MeanMS, l.MaxMS)
	}
	var m histogram
	if err := m.merge(h.snapshot()); err != nil || m.Summary() != l {
		t.Errorf("merged snapshot: %+v, %v; want %+v", m.Summary(), err, l)
	}
	if err := m.merge(histSnapshot{Buckets: [][2]uint64{{histBuckets, 1}}, Count: 1}); err == nil || m.Summary() != l {
		t.Errorf("a bucket out of range: %v, and %+v; want an error and nothing merged", err, m.Summary())
	}
	if s := (latency{}).String(); s != "no samples" {
		t.Errorf("empty summary reads %q", s)
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12.5: "12.5", 999: "999", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := human(v); got != want {
			t.Errorf("human(%v) = %q, want %q", v, got, want)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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
# TYPE backplane_commit_seconds histogram
backplane_commit_seconds_bucket{le="0.0005"} 1
backplane_commit_seconds_bucket{le="+Inf"} 1
backplane_commit_seconds_sum 0.0004
backplane_commit_seconds_count 1
backplane_dispatch_delay_seconds_bucket{node="a",le="0.001"} 1
backplane_dispatch_delay_seconds_bucket{node="b",le="0.001"} 2
backplane_dispatch_delay_seconds_bucket{le="+Inf",node="a"} 4
backplane_dispatch_delay_seconds_bucket{le="+Inf",node="b"} 2
backplane_dispatch_delay_seconds_sum{node="a"} 0.5
backplane_dispatch_delay_seconds_sum{node="b"} 0.25
backplane_dispatch_delay_seconds_count{node="a"} 4
backplane_dispatch_delay_seconds_count{node="b"} 2
process_cpu_seconds_total 1.5
`

func TestParseHistograms(t *testing.T) {
	got := parseHistograms(sampleMetrics, applyDelay, dispatchDelay, "backplane_missing_seconds")
	a := got[applyDelay]
	if a == nil {
		t.Fatal("apply histogram not found")
	}
	wantA := hist([]float64{0.00025, 0.0005, 0.001, inf}, []float64{3, 7, 9, 10}, 0.0123)
	if fmt.Sprint(a) != fmt.Sprint(wantA) {
		t.Errorf("apply: %+v, want %+v", a, wantA)
	}
	// Label sets other than le are added together.
	wantD := hist([]float64{0.001, inf}, []float64{3, 6}, 0.75)
	if d := got[dispatchDelay]; fmt.Sprint(d) != fmt.Sprint(wantD) {
		t.Errorf("dispatch: %+v, want %+v", d, wantD)
	}
	if _, ok := got["backplane_missing_seconds"]; ok || len(got) != 2 {
		t.Errorf("got %d histograms, want only the two present", len(got))
	}
	if got := parseHistograms("process_cpu_seconds_total 1\n", applyDelay); len(got) != 0 {
		t.Errorf("no histogram: got %v", got)
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

// fakeNode serves /admin/status and a /metrics that returns before on the
// first scrape and after on later ones.
func fakeNode(t *testing.T, leaderURL *string, isLeader bool, before, after string) *httptest.Server {
	var scrapes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/admin/status":
			if isLeader {
				fmt.Fprint(w, `{"state":"Leader"}`)
			} else {
				fmt.Fprintf(w, `{"state":"Follower","leader":{"http_addr":%q}}`, strings.TrimPrefix(*leaderURL, "http://"))
			}
		case "/metrics":
			if scrapes.Add(1) == 1 {
				fmt.Fprint(w, before)
			} else {
				fmt.Fprint(w, after)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func delayText(apply, dispatch []float64, sum float64) string {
	var b strings.Builder
	for _, m := range []struct {
		name   string
		counts []float64
	}{{applyDelay, apply}, {dispatchDelay, dispatch}} {
		if m.counts == nil {
			continue
		}
		for i, le := range []string{"0.001", "0.002", "+Inf"} {
			fmt.Fprintf(&b, "%s_bucket{le=%q} %v\n", m.name, le, m.counts[i])
		}
		fmt.Fprintf(&b, "%s_sum %v\n%s_count %v\n", m.name, sum, m.name, m.counts[2])
	}
	return b.String()
}

func TestDelayMeter(t *testing.T) {
	var leaderURL string
	zero := []float64{0, 0, 0}
	leader := fakeNode(t, &leaderURL, true, delayText(zero, zero, 0), delayText([]float64{10, 10, 10}, []float64{0, 10, 10}, 0.015))
	leaderURL = leader.URL
	f1 := fakeNode(t, &leaderURL, false, delayText([]float64{1, 1, 1}, zero, 0.0005),
		delayText([]float64{1, 11, 11}, []float64{0, 5, 10}, 0.0205))
	// An older binary: no delay histograms at all.
	f2 := fakeNode(t, &leaderURL, false, "process_cpu_seconds_total 1\n", "process_cpu_seconds_total 2\n")
	c := &cluster{http: http.DefaultClient, nodes: []*benchNode{{id: "n1", url: leader.URL}, {id: "n2", url: f1.URL}, {id: "n3", url: f2.URL}}}
	ctx := context.Background()
	rep := c.startDelayMeter(ctx).Stop(ctx)
	var got []string
	for _, l := range rep.lines {
		got = append(got, l.name+": "+l.lat.String())
	}
	want := []string{
		"stamp → applied, leader: p50 0.50  p99 0.99  mean 1.50 ms (n=10)",
		"stamp → applied, followers: p50 1.50  p99 1.99  mean 2.00 ms (n=10)",
		"stamp → queued to sockets, leader: p50 1.50  p99 1.99  mean 1.50 ms (n=10)",
		"stamp → queued to sockets, followers: p50 2.00  p99 2.00  mean 2.00 ms (n=10)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(rep.notes) != 1 || !strings.Contains(rep.notes[0], "n3") || !strings.Contains(rep.notes[0], applyDelay) {
		t.Errorf("notes %q, want one naming n3 and the missing histograms", rep.notes)
	}
	r := &scenarioResult{}
	rep.addTo(r, "stream: ", false)
	if m := r.metric("stream: stamp → applied, leader"); m == nil || m.Latency == nil || !m.Latency.Interpolated {
		t.Errorf("metric not added with its prefix: %+v", r.Metrics)
	}
	if len(r.Notes) != 2 || !strings.Contains(r.Notes[1], "raft.Apply") {
		t.Errorf("notes %q, want the missing nodes and the stages", r.Notes)
	}

	// No node has them: no line, one note, no explanation of the stages.
	old := fakeNode(t, &leaderURL, true, "", "")
	leaderURL = old.URL
	c = &cluster{http: http.DefaultClient, nodes: []*benchNode{{id: "n1", url: old.URL}, {id: "n3", url: f2.URL}}}
	rep = c.startDelayMeter(ctx).Stop(ctx)
	r = &scenarioResult{}
	rep.addTo(r, "", false)
	if len(r.Metrics) != 0 || len(r.Notes) != 1 {
		t.Errorf("without histograms: metrics %+v, notes %q", r.Metrics, r.Notes)
	}
}

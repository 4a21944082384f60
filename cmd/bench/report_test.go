package main

import (
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func scenarioWith(name string, perEntry, perSec float64) *result {
	s := &result{Name: name}
	s.add("committed publishes/s", perSec, "msg/s")
	s.add("messages per Raft entry", perEntry, "")
	return s
}

func TestThroughputGroups(t *testing.T) {
	rep := &report{Scenarios: []*result{scenarioWith("hifreq", 4.2, 1), scenarioWith("hifreq-ws", 1.1, 1)}}
	want := []perEntryGroup{{4, []string{"hifreq"}}, {1, []string{"hifreq-ws"}}}
	if got := throughputGroups(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("both ran: got %v, want %v", got, want)
	}
	rep = &report{Scenarios: []*result{scenarioWith("hifreq", 2.6, 1), scenarioWith("hifreq-ws", 3.2, 1)}}
	want = []perEntryGroup{{3, []string{"hifreq", "hifreq-ws"}}}
	if got := throughputGroups(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("the same rounding shares one measurement: got %v, want %v", got, want)
	}
	failed := scenarioWith("hifreq", 4, 1)
	failed.Err = "boom"
	rep = &report{Scenarios: []*result{failed, scenarioWith("hifreq-ws", 0.7, 1)}}
	want = []perEntryGroup{{1, []string{"hifreq-ws"}}}
	if got := throughputGroups(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq failed, below one is one: got %v, want %v", got, want)
	}
	if got := throughputGroups(&report{Scenarios: []*result{{Name: "fanout"}}}); got != nil {
		t.Errorf("no throughput scenario: got %v, want none", got)
	}
	want = []perEntryGroup{{1, []string{"hifreq"}}}
	if got := throughputGroups(&report{}); !reflect.DeepEqual(got, want) {
		t.Errorf("baselines only: got %v, want %v", got, want)
	}
}

// ratios lists a metric's comparisons as "baseline what" → ratio.
func ratios(m *metric) map[string]float64 {
	out := map[string]float64{}
	for _, c := range m.Versus {
		out[c.Baseline+" "+c.What] = c.Ratio
	}
	return out
}

// throughputBaseline is a bare Raft throughput measurement compared with
// the scenarios named.
func throughputBaseline(name string, perSec float64, scenarios ...string) *result {
	r := &result{Name: name}
	r.add("committed messages/s", perSec, "msg/s")
	for _, s := range scenarios {
		r.versus = append(r.versus, versus{s, "committed publishes/s", "committed messages/s"})
	}
	return r
}

func TestFinishComparesThroughput(t *testing.T) {
	rep := &report{Scenarios: []*result{scenarioWith("hifreq", 4, 1000), scenarioWith("hifreq-ws", 1, 500)}}
	rep.Baselines = []*result{
		throughputBaseline("raft 4/256", 2000, "hifreq"), throughputBaseline("raft 4/16", 4000, "hifreq"),
		throughputBaseline("raft 1/16", 1000, "hifreq-ws"), throughputBaseline("raft 3/16", 250, "hifreq", "hifreq-ws"),
	}
	rep.finish()
	want := map[string]float64{"raft 4/256 msg/s": 0.5, "raft 4/16 msg/s": 0.25, "raft 3/16 msg/s": 4}
	if got := ratios(rep.scenario("hifreq").metric("committed publishes/s")); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq versus %v, want %v", got, want)
	}
	want = map[string]float64{"raft 1/16 msg/s": 0.5, "raft 3/16 msg/s": 2}
	if got := ratios(rep.scenario("hifreq-ws").metric("committed publishes/s")); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq-ws versus %v, want %v", got, want)
	}
}

func TestFinishComparesLatencies(t *testing.T) {
	s := &result{Name: "broadcast"}
	s.lat("publish → 202 (commit)", latency{Count: 10, P50MS: 4, P99MS: 8})
	s.lat("publish → delivery, other nodes", latency{Count: 10, P50MS: 9, P99MS: 30})
	s.lat("stamp → applied, followers", latency{Count: 10, P50MS: 6, P99MS: 20, Interpolated: true})
	b := &result{Name: "bare"}
	b.lat("commit", latency{Count: 10, P50MS: 2, P99MS: 4})
	b.lat("stamp → applied, followers", latency{Count: 20, P50MS: 3, P99MS: 0})
	b.versus = []versus{{"broadcast", "publish → 202 (commit)", "commit"},
		{"broadcast", "stamp → applied, followers", "stamp → applied, followers"},
		{"broadcast", "publish → delivery, other nodes", "stamp → applied, followers"},
		{"broadcast", "no such metric", "commit"}, {"fanout", "deliveries/s", "commit"}}
	rep := &report{Scenarios: []*result{s}, Baselines: []*result{b}}
	rep.finish()
	for metric, want := range map[string]map[string]float64{
		"publish → 202 (commit)":          {"bare: commit p50": 2, "bare: commit p99": 2},
		"stamp → applied, followers":      {"bare: stamp → applied, followers p50": 2}, // a zero p99 is left out
		"publish → delivery, other nodes": {"bare: stamp → applied, followers p50": 3},
	} {
		if got := ratios(s.metric(metric)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s versus %v, want %v", metric, got, want)
		}
	}
	var out strings.Builder
	rep.print(&out)
	if want := "p50 3.00× bare: stamp → applied, followers (3.00 ms)"; !strings.Contains(out.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"versus":[{"baseline":"bare: commit","what":"p50","baseline_value":2,"ratio":2}`) {
		t.Errorf("JSON lacks the comparison: %s", j)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.fanoutWin != rawQueueDepth || rawQueueDepth != 64 {
		t.Errorf("-fanout-window default %d, want the raw baseline's queue depth 64", cfg.fanoutWin)
	}
	if cfg.wsPipeline != 4 {
		t.Errorf("-ws-pipeline default %d, want 4", cfg.wsPipeline)
	}
	if i := slices.Index(cfg.scenarios, "hifreq-ws"); i < 1 || cfg.scenarios[i-1] != "hifreq" {
		t.Errorf("all = %v: want hifreq-ws right after hifreq", cfg.scenarios)
	}
	for _, bad := range []string{"0", "1025"} {
		if _, err := parseFlags([]string{"-ws-pipeline", bad}, io.Discard); err == nil {
			t.Errorf("-ws-pipeline %s accepted", bad)
		}
	}
}

package main

import (
	"io"
	"strings"
	"testing"
)

func TestPrintPeersRatios(t *testing.T) {
	cfg, err := parseFlags([]string{"-peers", "-peer-inflight", "1,256", "-rate", "1000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tput := func(name, metric string, v float64, extra ...*metric) *result {
		r := &result{Name: name}
		r.add(metric, v, "msg/s")
		r.Metrics = append(r.Metrics, extra...)
		return r
	}
	latm := func(name string, p50, p99 float64) *metric {
		return &metric{Name: name, Latency: &latency{P50MS: p50, P99MS: p99}}
	}
	rep := &report{
		Scenarios: []*result{
			tput("hifreq.1", "committed publishes/s", 400, latm("publish → 202 (commit)", 2.5, 6)),
			tput("hifreq.256", "committed publishes/s", 30000, &metric{Name: "messages per Raft entry", Value: 9.2}),
			{Name: "broadcast", Metrics: []*metric{latm("publish → 202 (commit)", 5, 12), latm("publish → delivery, other nodes", 7, 15)}},
		},
		Baselines: []*result{
			tput("bare Raft at 1 msgs/entry, 1 in flight (peers)", "committed messages/s", 800, latm("commit", 1, 3)),
			tput("bare Raft at 1 msgs/entry, 256 in flight (peers)", "committed messages/s", 20000),
			tput("bare Raft at 9 msgs/entry, 256 in flight (peers)", "committed messages/s", 100000),
			{Name: "bare Raft at 1,000 msgs/s, 1 msgs/entry", Metrics: []*metric{latm("commit", 4, 11), latm("stamp → applied, followers", 6, 20)}},
			tput("JetStream R3 fsync always, 256 in flight", "committed messages/s", 15000),
			{Name: "JetStream R3 fsync always, at 1,000 msgs/s", Metrics: []*metric{latm("ack", 1, 5), latm("publish → consume", 2, 30)}},
		},
	}
	var out strings.Builder
	rep.printPeers(&out, cfg)
	for _, want := range []string{
		"REST ÷ JetStream                     2.00×",
		"REST ÷ bare Raft at 9 msgs/entry     0.30×",
		"1 in flight: publish → 202 p50 − bare Raft commit p50   +1.50 ms",
		"follower apply p99   0.75×",
		"JetStream publish → consume p99 0.50×",
		"bare Raft commit p99   +1.0 ms",
		"| 400 / 30,000 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Redis") {
		t.Errorf("a Redis row without a Redis run:\n%s", out.String())
	}
}

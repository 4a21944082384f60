package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
)

// printPeers prints the peers' comparison as one table (docs/performance.md
// quotes it): committed messages/s at each in-flight count, ack and
// publish → reader latency at the paced rate, CPU per committed message,
// then the targets as ratios to the baselines of this run.
func (rep *report) printPeers(w io.Writer, cfg config) {
	find := func(name string) *result {
		for _, r := range append(append([]*result{}, rep.Scenarios...), rep.Baselines...) {
			if r.Name == name && r.Err == "" {
				return r
			}
		}
		return nil
	}
	val := func(r *result, metric string) float64 {
		if r == nil {
			return math.NaN()
		}
		if m := r.metric(metric); m != nil {
			return m.Value
		}
		return math.NaN()
	}
	lat := func(r *result, metric string) *latency {
		if r == nil {
			return nil
		}
		if m := r.metric(metric); m != nil && m.Latency != nil {
			return m.Latency
		}
		return nil
	}
	// cpuPerMsg is the CPU of the measured system's processes (the nodes;
	// for in-process peers, this process, which includes their clients)
	// per committed message, in µs.
	cpuPerMsg := func(r *result, metric string, procs ...string) float64 {
		if r == nil {
			return math.NaN()
		}
		pct := 0.0
		for _, u := range r.Usage {
			for _, p := range procs {
				if strings.HasPrefix(u.Name, p) {
					pct += u.CPUPct
				}
			}
		}
		return pct / 100 / val(r, metric) * 1e6
	}
	// othersOf is the CPU other work took during r, % of one core.
	othersOf := func(r *result) float64 {
		if r != nil {
			for _, u := range r.Usage {
				if u.Name == "others" {
					return u.CPUPct
				}
			}
		}
		return math.NaN()
	}
	rate := human(cfg.rate)
	type row struct {
		name        string
		tput        []float64
		ack, reader *latency
		cpu, others float64
	}
	var rows []row
	add := func(name string, runName func(n int) string, metric string, paced *result, ackM, readM string, procs ...string) {
		rw := row{name: name, ack: lat(paced, ackM), reader: lat(paced, readM), cpu: math.NaN(), others: math.NaN()}
		for _, n := range cfg.peerInflight {
			rw.tput = append(rw.tput, val(find(runName(n)), metric))
		}
		if last := cfg.peerInflight[len(cfg.peerInflight)-1]; len(procs) > 0 {
			rw.cpu = cpuPerMsg(find(runName(last)), metric, procs...)
			rw.others = othersOf(find(runName(last)))
		}
		rows = append(rows, rw)
	}
	bareN := func(k int) func(int) string {
		return func(n int) string { return fmt.Sprintf("bare Raft at %d msgs/entry, %d in flight (peers)", k, n) }
	}
	barePaced := find(fmt.Sprintf("bare Raft at %s msgs/s, 1 msgs/entry", rate))
	add("bare hashicorp/raft, 1 msg/entry (paced: follower apply)", bareN(1), "committed messages/s", barePaced,
		"commit", "stamp → applied, followers", "bench")
	add("NATS JetStream R3, file, sync always", func(n int) string { return fmt.Sprintf("JetStream R3 fsync always, %d in flight", n) },
		"committed messages/s", find("JetStream R3 fsync always, at "+rate+" msgs/s"), "ack", "publish → consume", "bench")
	if find("Redis Streams appendfsync always, at "+rate+" msgs/s") != nil {
		add("Redis Streams, appendfsync always", func(n int) string { return fmt.Sprintf("Redis Streams appendfsync always, %d in flight", n) },
			"committed messages/s", find("Redis Streams appendfsync always, at "+rate+" msgs/s"), "ack", "publish → consume", "redis")
	}
	add("Backplane REST (paced: broadcast, other nodes)", peerScenario, "committed publishes/s", find("broadcast"),
		"publish → 202 (commit)", "publish → delivery, other nodes", "node")
	ws := find("hifreq-ws")
	wsInflight := cfg.publishers * cfg.wsPipeline

	fmt.Fprintf(w, "\n== the durable peers, this run (200-byte messages unless -size; %d readers each; paced at %s msgs/s)\n", peerReaders, rate)
	var head []string
	for _, n := range cfg.peerInflight {
		head = append(head, fmt.Sprint(n))
	}
	fmt.Fprintf(w, "| system | committed msgs/s at %s in flight | ack p50 / p99 at %s msgs/s | publish → reader p50 / p99 | CPU µs per msg at %[3]d | others' CPU at %[3]d (of %[4]d) |\n|---|---|---|---|---|---|\n",
		strings.Join(head, " / "), rate, cfg.peerInflight[len(cfg.peerInflight)-1], 100*runtime.NumCPU())
	for _, rw := range rows {
		var t []string
		for _, v := range rw.tput {
			t = append(t, humanNaN(v))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", rw.name, strings.Join(t, " / "), latPair(rw.ack), latPair(rw.reader), humanNaN(rw.cpu), humanNaN(rw.others))
	}
	if ws != nil {
		fmt.Fprintf(w, "| Backplane SignalR WebSocket SendToGroup, %d in flight | %s | | | %s | %s |\n",
			wsInflight, humanNaN(val(ws, "committed publishes/s")), humanNaN(cpuPerMsg(ws, "committed publishes/s", "node")), humanNaN(othersOf(ws)))
	}

	// The targets (issue 16), as ratios of this run.
	last := cfg.peerInflight[len(cfg.peerInflight)-1]
	rest := val(find(peerScenario(last)), "committed publishes/s")
	js := val(find(fmt.Sprintf("JetStream R3 fsync always, %d in flight", last)), "committed messages/s")
	rd := val(find(fmt.Sprintf("Redis Streams appendfsync always, %d in flight", last)), "committed messages/s")
	perEntry := perEntryOf(find(peerScenario(last)))
	bareSame := val(find(bareN(perEntry)(last)), "committed messages/s")
	fmt.Fprintf(w, "\ntargets at %d in flight (ratio; target):\n", last)
	fmt.Fprintf(w, "   REST ÷ JetStream                     %s  (≥ 1.5)\n", ratioText(rest, js))
	fmt.Fprintf(w, "   REST ÷ bare Raft at %d msgs/entry     %s  (≥ 0.8)\n", perEntry, ratioText(rest, bareSame))
	if ws != nil {
		wsv := val(ws, "committed publishes/s")
		k := perEntryOf(ws)
		bareWS := val(find(fmt.Sprintf("bare Raft at %d msgs/entry, %d in flight", k, wsInflight)), "committed messages/s")
		fmt.Fprintf(w, "   WebSocket ÷ JetStream                %s  (≥ 2)\n", ratioText(wsv, js))
		fmt.Fprintf(w, "   WebSocket ÷ Redis Streams            %s  (≥ 1)\n", ratioText(wsv, rd))
		fmt.Fprintf(w, "   WebSocket ÷ bare Raft at %d msgs/entry %s  (≥ 0.8)\n", k, ratioText(wsv, bareWS))
	}
	first := cfg.peerInflight[0]
	if a, b := lat(find(peerScenario(first)), "publish → 202 (commit)"), lat(find(bareN(1)(first)), "commit"); a != nil && b != nil {
		fmt.Fprintf(w, "   %d in flight: publish → 202 p50 − bare Raft commit p50   %+.2f ms  (≤ +1 at 1)\n", first, a.P50MS-b.P50MS)
	}
	bc := find("broadcast")
	if d, f := lat(bc, "publish → delivery, other nodes"), lat(barePaced, "stamp → applied, followers"); d != nil && f != nil {
		fmt.Fprintf(w, "   at %s msgs/s: delivery on another node p99 ÷ bare Raft follower apply p99   %s  (< 1)\n", rate, ratioText(d.P99MS, f.P99MS))
	}
	if d, c := lat(bc, "publish → delivery, other nodes"), lat(find("JetStream R3 fsync always, at "+rate+" msgs/s"), "publish → consume"); d != nil && c != nil {
		fmt.Fprintf(w, "   at %s msgs/s: delivery on another node p99 ÷ JetStream publish → consume p99 %s  (< 1)\n", rate, ratioText(d.P99MS, c.P99MS))
	}
	if a, c := lat(bc, "publish → 202 (commit)"), lat(barePaced, "commit"); a != nil && c != nil {
		fmt.Fprintf(w, "   at %s msgs/s: publish → 202 p99 − bare Raft commit p99   %+.1f ms  (< +2)\n", rate, a.P99MS-c.P99MS)
	}
	rows0, rowsB := rows[0], rows[len(rows)-1]
	fmt.Fprintf(w, "   CPU per committed message, Backplane ÷ bare Raft (1 msg/entry, %d in flight)   %s  (≤ 2)\n", last, ratioText(rowsB.cpu, rows0.cpu))
}

func humanNaN(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return human(v)
}

func latPair(l *latency) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%s / %s ms", fmtMS(l.P50MS), fmtMS(l.P99MS))
}

func ratioText(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

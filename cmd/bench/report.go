package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// report is everything one run measured; it is printed as a table and
// written as JSON for comparison between runs.
type report struct {
	Date      string             `json:"date"`
	Command   string             `json:"command"`
	Host      hostInfo           `json:"host"`
	Cluster   string             `json:"cluster"`
	Scenarios []*scenarioResult  `json:"scenarios"`
	Baselines baselines          `json:"baselines"`
	Disk      []diskUsage        `json:"disk,omitempty"`
	PeakRSSMB map[string]float64 `json:"peak_rss_mb,omitempty"`
	peakRSS   []float64
	nodeNames []string
}

type hostInfo struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// baselines are measured in the same run, after the scenarios.
type baselines struct {
	Raft []raftBaseline `json:"raft,omitempty"`
	WS   []wsBaseline   `json:"websocket,omitempty"`
}

// raftBaseline is one measurement of the bare Raft cluster.
type raftBaseline struct {
	For           string   `json:"for"`                // the scenario it is compared with
	AlsoFor       []string `json:"also_for,omitempty"` // further scenarios compared with the same measurement
	MsgsPerEntry  int      `json:"messages_per_entry"`
	Inflight      int      `json:"inflight,omitempty"`
	Rate          float64  `json:"rate,omitempty"` // messages/s offered; 0: as fast as possible
	MsgsPerSec    float64  `json:"messages_per_s"`
	EntriesPerSec float64  `json:"entries_per_s"`
	Commit        latency  `json:"commit_latency"`
	// A paced measurement's stamp → applied delays, named as the
	// broadcast scenario's lines, and the member(s) that applied as
	// leader.
	Delays []namedLatency `json:"delays,omitempty"`
	Leader string         `json:"leader,omitempty"`
	// Processes is 3 when each member ran in a process of its own, 0
	// when all three ran in the benchmark process.
	Processes int      `json:"processes,omitempty"`
	Usage     []usage  `json:"usage"`
	Notes     []string `json:"notes,omitempty"`
}

// namedLatency is one delay of a baseline.
type namedLatency struct {
	Name    string  `json:"name"`
	Latency latency `json:"latency"`
}

// delay returns the named delay, if measured.
func (rb raftBaseline) delay(name string) (latency, bool) {
	for _, d := range rb.Delays {
		if d.Name == name && d.Latency.Count > 0 {
			return d.Latency, true
		}
	}
	return latency{}, false
}

// scenarios names every scenario compared with the measurement.
func (rb raftBaseline) scenarios() []string {
	return append([]string{rb.For}, rb.AlsoFor...)
}

func (rb raftBaseline) label() string {
	if rb.Rate > 0 {
		return fmt.Sprintf("%s commit at %s msgs/s, %d msgs/entry", rb.engine(), human(rb.Rate), rb.MsgsPerEntry)
	}
	return fmt.Sprintf("bare Raft at %d msgs/entry, %d in flight", rb.MsgsPerEntry, rb.Inflight)
}

// engine names the bare cluster: "bare Raft" in the benchmark process,
// "bare Raft, 3 processes" in processes of their own.
func (rb raftBaseline) engine() string {
	if rb.Processes > 1 {
		return fmt.Sprintf("bare Raft, %d processes,", rb.Processes)
	}
	return "bare Raft"
}

// delayLabel names one of a paced measurement's delays as a baseline.
func (rb raftBaseline) delayLabel(name string) string {
	return fmt.Sprintf("%s %s at %s msgs/s", rb.engine(), name, human(rb.Rate))
}

// wsBaseline is one measurement of the raw WebSocket broadcast.
type wsBaseline struct {
	Conns            int     `json:"connections"`
	PerFrame         int     `json:"messages_per_frame"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	RecordsPerFrame  float64 `json:"records_per_frame"`  // records received per WebSocket frame, in the stream
	OneToAll         latency `json:"one_message_to_all"` // with one message per frame
	Usage            []usage `json:"usage"`
}

func (wb wsBaseline) label() string {
	return fmt.Sprintf("raw WebSocket, %d/frame", wb.PerFrame)
}

// scenarioResult is one scenario's figures.
type scenarioResult struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Params      map[string]any `json:"params"`
	Seconds     float64        `json:"seconds"`
	Metrics     []*metric      `json:"metrics"`
	Usage       []usage        `json:"usage"`
	Notes       []string       `json:"notes,omitempty"`
	Err         string         `json:"error,omitempty"`
	mu          sync.Mutex
}

// metric is one figure, with its comparison to baselines.
type metric struct {
	Name    string       `json:"name"`
	Value   float64      `json:"value"`
	Unit    string       `json:"unit,omitempty"`
	Latency *latency     `json:"latency,omitempty"`
	Versus  []comparison `json:"versus,omitempty"`
}

// comparison is a figure as a multiple of a baseline's.
type comparison struct {
	Baseline string  `json:"baseline"`
	What     string  `json:"what"`
	Value    float64 `json:"baseline_value"`
	Ratio    float64 `json:"ratio"`
}

func (r *scenarioResult) add(name string, v float64, unit string) *metric {
	m := &metric{Name: name, Value: v, Unit: unit}
	r.Metrics = append(r.Metrics, m)
	return m
}

func (r *scenarioResult) lat(name string, l latency) *metric {
	m := &metric{Name: name, Value: l.P50MS, Unit: "ms p50", Latency: &l}
	r.Metrics = append(r.Metrics, m)
	return m
}

func (r *scenarioResult) addNote(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *scenarioResult) metric(name string) *metric {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func (rep *report) scenario(name string) *scenarioResult {
	for _, s := range rep.Scenarios {
		if s.Name == name && s.Err == "" {
			return s
		}
	}
	return nil
}

func newReport(cfg config) *report {
	return &report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: strings.Join(os.Args, " "),
		Host:    hostInfo{NProc: runtime.NumCPU(), CPU: cpuModel(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// finish attaches the baselines to the figures they are compared with.
func (rep *report) finish() {
	if len(rep.peakRSS) > 0 {
		rep.PeakRSSMB = map[string]float64{}
		for i, v := range rep.peakRSS {
			name := "bench"
			if i < len(rep.nodeNames) {
				name = rep.nodeNames[i]
			}
			rep.PeakRSSMB[name] = v
		}
	}
	for _, rb := range rep.Baselines.Raft {
		if rb.Rate > 0 {
			s := rep.scenario(rb.For)
			if s == nil {
				continue
			}
			if m := s.metric("publish → 202 (commit)"); m != nil && m.Latency != nil && rb.Commit.Count > 0 {
				m.Versus = append(m.Versus,
					comparison{Baseline: rb.label(), What: "p50", Value: rb.Commit.P50MS, Ratio: m.Latency.P50MS / rb.Commit.P50MS},
					comparison{Baseline: rb.label(), What: "p99", Value: rb.Commit.P99MS, Ratio: m.Latency.P99MS / rb.Commit.P99MS})
			}
			// The nodes' stamp → applied against Raft's alone, and a
			// delivery on another node against Raft's apply there.
			for _, p := range []struct{ metric, base string }{
				{"stamp → applied, leader", "stamp → applied, leader"},
				{"stamp → applied, followers", "stamp → applied, followers"},
				{"publish → delivery, other nodes", "stamp → applied, followers"},
			} {
				m := s.metric(p.metric)
				bl, ok := rb.delay(p.base)
				if m == nil || m.Latency == nil || m.Latency.Count == 0 || !ok {
					continue
				}
				m.Versus = append(m.Versus, ratios(rb.delayLabel(p.base), *m.Latency, bl)...)
			}
			continue
		}
		// A throughput measurement: each scenario it was made for (at
		// that scenario's own messages per entry) compares with it.
		for _, name := range rb.scenarios() {
			s := rep.scenario(name)
			if s == nil {
				continue
			}
			if m := s.metric("committed publishes/s"); m != nil && rb.MsgsPerSec > 0 {
				m.Versus = append(m.Versus, comparison{Baseline: rb.label(), What: "messages/s", Value: rb.MsgsPerSec, Ratio: m.Value / rb.MsgsPerSec})
			}
		}
	}
	if s := rep.scenario("fanout"); s != nil {
		if m := s.metric("deliveries/s"); m != nil {
			for _, wb := range rep.Baselines.WS {
				if wb.DeliveriesPerSec > 0 {
					m.Versus = append(m.Versus, comparison{Baseline: wb.label(), What: "deliveries/s", Value: wb.DeliveriesPerSec, Ratio: m.Value / wb.DeliveriesPerSec})
				}
			}
		}
		if m := s.metric("one message → all connections"); m != nil && m.Latency != nil {
			for _, wb := range rep.Baselines.WS {
				if wb.OneToAll.Count > 0 {
					m.Versus = append(m.Versus,
						comparison{Baseline: wb.label(), What: "p50", Value: wb.OneToAll.P50MS, Ratio: m.Latency.P50MS / wb.OneToAll.P50MS},
						comparison{Baseline: wb.label(), What: "p99", Value: wb.OneToAll.P99MS, Ratio: m.Latency.P99MS / wb.OneToAll.P99MS})
				}
			}
		}
	}
}

// ratios compares a latency's p50 and p99 with a baseline's, leaving out
// a percentile the baseline has as zero.
func ratios(label string, l, base latency) []comparison {
	var out []comparison
	if base.P50MS > 0 {
		out = append(out, comparison{Baseline: label, What: "p50", Value: base.P50MS, Ratio: l.P50MS / base.P50MS})
	}
	if base.P99MS > 0 {
		out = append(out, comparison{Baseline: label, What: "p99", Value: base.P99MS, Ratio: l.P99MS / base.P99MS})
	}
	return out
}

// print writes the results table.
func (rep *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nBackplane benchmark, %s\n", rep.Date)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s, %s\n", rep.Host.NProc, rep.Host.CPU, rep.Host.OS, rep.Host.GoVersion)
	fmt.Fprintf(w, "cluster: %s\ncommand: %s\n", rep.Cluster, rep.Command)
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n== %s: %s\n", s.Name, s.Description)
		if s.Err != "" {
			fmt.Fprintf(w, "   FAILED: %s\n", s.Err)
		}
		for _, m := range s.Metrics {
			fmt.Fprintf(w, "   %-52s %s%s\n", m.Name, m.valueText(), m.versusText())
		}
		if len(s.Usage) > 0 {
			var cpu, rss []string
			for _, u := range s.Usage {
				cpu = append(cpu, fmt.Sprintf("%s %.0f", u.Name, u.CPUPct))
				if u.Name != "others" {
					rss = append(rss, fmt.Sprintf("%s %.0f", u.Name, u.RSSMB))
				}
			}
			fmt.Fprintf(w, "   %-52s %s (of %d00)\n", "CPU, % of one core", strings.Join(cpu, "  "), rep.Host.NProc)
			fmt.Fprintf(w, "   %-52s %s\n", "memory, RSS MB at the end", strings.Join(rss, "  "))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "   note: %s\n", n)
		}
	}
	if len(rep.Disk) > 0 || len(rep.PeakRSSMB) > 0 {
		fmt.Fprintf(w, "\n== disk and memory after all scenarios\n")
		for _, d := range rep.Disk {
			fmt.Fprintf(w, "   %s\n", d)
		}
		for _, name := range rep.nodeNames {
			if v, ok := rep.PeakRSSMB[name]; ok {
				fmt.Fprintf(w, "   %s peak RSS %.0f MB\n", name, v)
			}
		}
	}
	if len(rep.Baselines.Raft)+len(rep.Baselines.WS) > 0 {
		fmt.Fprintf(w, "\n== baselines (same machine, same run)\n")
		for _, rb := range rep.Baselines.Raft {
			if rb.Rate > 0 {
				fmt.Fprintf(w, "   %-52s commit %s\n", rb.label(), rb.Commit)
			} else {
				fmt.Fprintf(w, "   %-52s %s msgs/s (%s entries/s), commit %s\n", rb.label(), human(rb.MsgsPerSec), human(rb.EntriesPerSec), rb.Commit)
			}
			for _, d := range rb.Delays {
				fmt.Fprintf(w, "   %-52s %s\n", "   "+d.Name, d.Latency)
			}
			printUsage(w, rb.Usage)
			for _, n := range rb.Notes {
				fmt.Fprintf(w, "      note: %s\n", n)
			}
		}
		for _, wb := range rep.Baselines.WS {
			fmt.Fprintf(w, "   %-52s %s deliveries/s to %s connections, %.2f records per WebSocket frame\n",
				wb.label(), human(wb.DeliveriesPerSec), human(float64(wb.Conns)), wb.RecordsPerFrame)
			if wb.OneToAll.Count > 0 {
				fmt.Fprintf(w, "   %-52s %s\n", "   one message → all connections", wb.OneToAll)
			}
			printUsage(w, wb.Usage)
		}
	}
	fmt.Fprintln(w)
}

func printUsage(w io.Writer, us []usage) {
	if len(us) == 0 {
		return
	}
	var cpu []string
	for _, u := range us {
		cpu = append(cpu, fmt.Sprintf("%s %.0f", u.Name, u.CPUPct))
	}
	fmt.Fprintf(w, "   %-52s %s\n", "   CPU, % of one core", strings.Join(cpu, "  "))
}

func (m *metric) valueText() string {
	if m.Latency != nil {
		return m.Latency.String()
	}
	switch {
	case m.Unit == "":
		return fmt.Sprintf("%.2f", m.Value)
	case m.Unit == "ms":
		return fmt.Sprintf("%s ms", fmtMS(m.Value))
	}
	return fmt.Sprintf("%s %s", human(m.Value), m.Unit)
}

func (m *metric) versusText() string {
	if len(m.Versus) == 0 {
		return ""
	}
	var parts []string
	for _, c := range m.Versus {
		switch c.What {
		case "p50", "p99":
			parts = append(parts, fmt.Sprintf("%s %.2f× %s (%s ms)", c.What, c.Ratio, c.Baseline, fmtMS(c.Value)))
		default:
			parts = append(parts, fmt.Sprintf("%.2f× %s (%s)", c.Ratio, c.Baseline, human(c.Value)))
		}
	}
	return "\n" + strings.Repeat(" ", 56) + "(" + strings.Join(parts, ";\n"+strings.Repeat(" ", 57)) + ")"
}

// writeJSON writes the report to path.
func (rep *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

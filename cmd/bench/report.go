package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// report is everything one run measured; it is printed as a table and
// written as JSON for comparison between runs.
type report struct {
	Date      string             `json:"date"`
	Command   string             `json:"command"`
	Host      string             `json:"host"`
	Cluster   string             `json:"cluster"`
	Scenarios []*result          `json:"scenarios"`
	Baselines []*result          `json:"baselines,omitempty"` // measured in the same run, after the scenarios
	Disk      []diskUsage        `json:"disk,omitempty"`
	PeakRSSMB map[string]float64 `json:"peak_rss_mb,omitempty"`
}

// result is one scenario's or baseline's figures.
type result struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Params      map[string]any `json:"params,omitempty"`
	Seconds     float64        `json:"seconds,omitempty"`
	Metrics     []*metric      `json:"metrics"`
	Usage       []usage        `json:"usage,omitempty"`
	Notes       []string       `json:"notes,omitempty"`
	Err         string         `json:"error,omitempty"`
	// versus lists what a baseline is compared with.
	versus []versus
	mu     sync.Mutex // guards Notes
}

// versus compares a scenario's metric with a baseline's.
type versus struct{ scenario, metric, base string }

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

func (r *result) add(name string, v float64, unit string) *metric {
	m := &metric{Name: name, Value: v, Unit: unit}
	r.Metrics = append(r.Metrics, m)
	return m
}

func (r *result) lat(name string, l latency) *metric {
	m := &metric{Name: name, Value: l.P50MS, Unit: "ms p50", Latency: &l}
	r.Metrics = append(r.Metrics, m)
	return m
}

func (r *result) addNote(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *result) metric(name string) *metric {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// scenario returns the named scenario, if it ran without error.
func (rep *report) scenario(name string) *result {
	for _, s := range rep.Scenarios {
		if s.Name == name && s.Err == "" {
			return s
		}
	}
	return nil
}

func newReport() *report {
	cpu := "unknown"
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if info, err := fs.CPUInfo(); err == nil && len(info) > 0 {
			cpu = info[0].ModelName
		}
	}
	return &report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: strings.Join(os.Args, " "),
		Host:    fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version()),
	}
}

// finish attaches the baselines to the figures they are compared with: a
// latency by its p50 and p99, any other figure by its value.
func (rep *report) finish() {
	for _, b := range rep.Baselines {
		for _, v := range b.versus {
			s := rep.scenario(v.scenario)
			if s == nil {
				continue
			}
			m, base := s.metric(v.metric), b.metric(v.base)
			if m == nil || base == nil {
				continue
			}
			label := b.Name
			if base.Latency != nil {
				label += ": " + v.base
			}
			m.compare(label, base)
		}
	}
}

// compare adds base's figures as baselines of m's.
func (m *metric) compare(label string, base *metric) {
	if m.Latency == nil || base.Latency == nil {
		if base.Value > 0 {
			m.Versus = append(m.Versus, comparison{Baseline: label, What: base.Unit, Value: base.Value, Ratio: m.Value / base.Value})
		}
		return
	}
	if m.Latency.Count == 0 {
		return
	}
	if v := base.Latency.P50MS; v > 0 {
		m.Versus = append(m.Versus, comparison{Baseline: label, What: "p50", Value: v, Ratio: m.Latency.P50MS / v})
	}
	if v := base.Latency.P99MS; v > 0 {
		m.Versus = append(m.Versus, comparison{Baseline: label, What: "p99", Value: v, Ratio: m.Latency.P99MS / v})
	}
}

// print writes the results table.
func (rep *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nBackplane benchmark, %s\nmachine: %s\ncluster: %s\ncommand: %s\n", rep.Date, rep.Host, rep.Cluster, rep.Command)
	for _, s := range rep.Scenarios {
		s.print(w)
	}
	if len(rep.Disk) > 0 || len(rep.PeakRSSMB) > 0 {
		fmt.Fprintf(w, "\n== disk and memory after all scenarios\n")
		for _, d := range rep.Disk {
			fmt.Fprintf(w, "   %s\n", d)
		}
		for _, name := range slices.Sorted(maps.Keys(rep.PeakRSSMB)) {
			fmt.Fprintf(w, "   %s peak RSS %.0f MB\n", name, rep.PeakRSSMB[name])
		}
	}
	if len(rep.Baselines) > 0 {
		fmt.Fprintf(w, "\n== baselines (same machine, same run)\n")
		for _, b := range rep.Baselines {
			b.print(w)
		}
	}
	fmt.Fprintln(w)
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s\n", r.Name, r.Description)
	if r.Err != "" {
		fmt.Fprintf(w, "   FAILED: %s\n", r.Err)
	}
	for _, m := range r.Metrics {
		fmt.Fprintf(w, "   %-52s %s%s\n", m.Name, m.valueText(), m.versusText())
	}
	if len(r.Usage) > 0 {
		var cpu, rss []string
		for _, u := range r.Usage {
			cpu = append(cpu, fmt.Sprintf("%s %.0f", u.Name, u.CPUPct))
			if u.Name != "others" {
				rss = append(rss, fmt.Sprintf("%s %.0f", u.Name, u.RSSMB))
			}
		}
		fmt.Fprintf(w, "   %-52s %s (of %d00)\n", "CPU, % of one core", strings.Join(cpu, "  "), runtime.NumCPU())
		fmt.Fprintf(w, "   %-52s %s\n", "memory, RSS MB at the end", strings.Join(rss, "  "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

func (m *metric) valueText() string {
	switch {
	case m.Latency != nil:
		return m.Latency.String()
	case m.Unit == "":
		return fmt.Sprintf("%.2f", m.Value)
	case m.Unit == "ms":
		return fmt.Sprintf("%s ms", fmtMS(m.Value))
	}
	return fmt.Sprintf("%s %s", human(m.Value), m.Unit)
}

func (m *metric) versusText() string {
	var parts []string
	for _, c := range m.Versus {
		switch c.What {
		case "p50", "p99":
			parts = append(parts, fmt.Sprintf("%s %.2f× %s (%s ms)", c.What, c.Ratio, c.Baseline, fmtMS(c.Value)))
		default:
			parts = append(parts, fmt.Sprintf("%.2f× %s (%s)", c.Ratio, c.Baseline, human(c.Value)))
		}
	}
	if len(parts) == 0 {
		return ""
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

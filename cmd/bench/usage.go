package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	at     time.Time
	cpu    float64 // user+system seconds since start
	rssKB  int64
	peakKB int64 // VmHWM
	anonKB int64 // RssAnon: the Go heap, stacks and other private memory
	fileKB int64 // RssFile: mapped files (the bbolt stores, the binary)
	ok     bool
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status ("self" for this
// process).
func readProc(pid string) procSample {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return s
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: field 14 (utime) and 15 (stime) of the whole line.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	s.cpu = (ut + st) / clockTicks
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return s
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			s.rssKB = kbField(line)
		case strings.HasPrefix(line, "VmHWM:"):
			s.peakKB = kbField(line)
		case strings.HasPrefix(line, "RssAnon:"):
			s.anonKB = kbField(line)
		case strings.HasPrefix(line, "RssFile:"):
			s.fileKB = kbField(line)
		}
	}
	s.ok = true
	return s
}

// openFileLimit reads the soft "Max open files" limit of a process from
// /proc/<pid>/limits ("self" for this process); 0 if unknown.
func openFileLimit(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/limits")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.ParseInt(f[1], 10, 64)
	return v
}

// readMetricsUsage reads process_cpu_seconds_total and
// process_resident_memory_bytes from a remote node's /metrics.
func (c *cluster) readMetricsUsage(ctx context.Context, n *benchNode) procSample {
	s := procSample{at: time.Now()}
	b, err := c.get(ctx, n.url+"/metrics")
	if err != nil {
		return s
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "process_cpu_seconds_total":
			s.cpu, s.ok = v, true
		case "process_resident_memory_bytes":
			s.rssKB = int64(v / 1024)
		}
	}
	return s
}

// metricValues reads the named unlabelled series from a node's /metrics.
func (c *cluster) metricValues(ctx context.Context, n *benchNode, names ...string) (map[string]float64, error) {
	b, err := c.get(ctx, n.url+"/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		for _, name := range names {
			if f[0] == name {
				v, _ := strconv.ParseFloat(f[1], 64)
				out[name] = v
			}
		}
	}
	return out, nil
}

// commitMeter reads the leader's backplane_commit_seconds histogram (the
// time from raft.Apply to the leader's own apply, per entry) before and
// after a phase.
type commitMeter struct {
	c      *cluster
	leader *benchNode
	start  map[string]float64
}

const (
	commitSum   = "backplane_commit_seconds_sum"
	commitCount = "backplane_commit_seconds_count"
)

func (c *cluster) startCommitMeter(ctx context.Context) *commitMeter {
	li, err := c.leader(ctx)
	if err != nil {
		return nil
	}
	m := &commitMeter{c: c, leader: c.nodes[li]}
	if m.start, err = c.metricValues(ctx, m.leader, commitSum, commitCount); err != nil {
		return nil
	}
	return m
}

// Stop returns the mean commit time per entry in ms and the entries the
// leader committed, or zeros if the metrics are not available.
func (m *commitMeter) Stop(ctx context.Context) (meanMS float64, entries float64) {
	if m == nil {
		return 0, 0
	}
	end, err := m.c.metricValues(ctx, m.leader, commitSum, commitCount)
	if err != nil {
		return 0, 0
	}
	entries = end[commitCount] - m.start[commitCount]
	if entries <= 0 {
		return 0, 0
	}
	return 1000 * (end[commitSum] - m.start[commitSum]) / entries, entries
}

// usage is CPU and memory of one process over a phase.
type usage struct {
	Name   string  `json:"name"`
	CPUPct float64 `json:"cpu_pct"` // percent of one core
	RSSMB  float64 `json:"rss_mb"`  // at the end of the phase
	PeakMB float64 `json:"peak_rss_mb,omitempty"`
}

// usageMeter samples every node, this process and the whole machine at
// the start and end of a phase.
type usageMeter struct {
	c        *cluster
	start    []procSample
	machine0 machineSample
}

// machineSample is the busy and total CPU time of every CPU, in ticks,
// from the first line of /proc/stat.
type machineSample struct {
	busy, total float64
	ok          bool
}

func readMachine() machineSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineSample{}
	}
	var m machineSample
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		m.total += x
		if i != 3 && i != 4 { // idle, iowait
			m.busy += x
		}
	}
	m.ok = true
	return m
}

func (c *cluster) sampleAll(ctx context.Context) []procSample {
	out := make([]procSample, 0, len(c.nodes)+1)
	for _, n := range c.nodes {
		if pid := n.pid(); pid != 0 {
			out = append(out, readProc(strconv.Itoa(pid)))
		} else {
			out = append(out, c.readMetricsUsage(ctx, n))
		}
	}
	return append(out, readProc("self"))
}

// selfMeter measures only this process (and the rest of the machine), for
// the in-process baselines.
func selfMeter() *usageMeter {
	return &usageMeter{c: &cluster{}, start: []procSample{readProc("self")}, machine0: readMachine()}
}

func (c *cluster) startUsage(ctx context.Context) *usageMeter {
	return &usageMeter{c: c, start: c.sampleAll(ctx), machine0: readMachine()}
}

// Stop returns the usage of each node and of the benchmark process, then
// "others": the rest of the machine's busy time (other processes, and
// kernel work not charged to a process), in the same unit.
func (m *usageMeter) Stop(ctx context.Context) []usage {
	end := m.c.sampleAll(ctx)
	mach := readMachine()
	out := make([]usage, 0, len(end)+1)
	var ours float64
	for i, e := range end {
		name := "bench"
		if i < len(m.c.nodes) {
			name = m.c.nodes[i].id
		}
		if i < len(m.c.nodes) && !e.ok && m.c.nodes[i].dead() {
			name += " (killed)" // no end reading: its CPU and memory are unknown
		}
		u := usage{Name: name, RSSMB: float64(e.rssKB) / 1024, PeakMB: float64(e.peakKB) / 1024}
		if s := m.start[i]; s.ok && e.ok {
			u.CPUPct = 100 * (e.cpu - s.cpu) / e.at.Sub(s.at).Seconds()
		}
		ours += u.CPUPct
		out = append(out, u)
	}
	if s := m.machine0; s.ok && mach.ok && mach.total > s.total {
		cpus := float64(runtime.NumCPU())
		busy := 100 * cpus * (mach.busy - s.busy) / (mach.total - s.total)
		out = append(out, usage{Name: "others", CPUPct: max(busy-ours, 0)})
	}
	return out
}

// diskUsage is the space a node's data directory takes.
type diskUsage struct {
	Node       string  `json:"node"`
	LogBytes   int64   `json:"raft_log_bytes"`      // raft/raft.db, allocated
	SnapBytes  int64   `json:"raft_snapshot_bytes"` // raft/snapshots/, allocated
	StateBytes int64   `json:"state_bytes"`         // state/ (bbolt store), allocated
	Messages   uint64  `json:"messages"`
	PerMessage float64 `json:"bytes_per_message"`
}

// dirBytes is the space allocated to the files under dir (what du says).
func dirBytes(dir string) int64 {
	if info, err := os.Stat(dir); err == nil && !info.IsDir() {
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			return st.Blocks * 512
		}
		return info.Size()
	}
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// disk measures each local node's data directory against the messages
// committed so far.
func (c *cluster) disk(ctx context.Context) ([]diskUsage, error) {
	var out []diskUsage
	for _, n := range c.nodes {
		if n.dataDir == "" {
			return nil, nil // remote: not measurable from here
		}
		if n.dead() {
			continue // killed by the storm scenario
		}
		st, err := c.status(ctx, n)
		if err != nil {
			return nil, err
		}
		raftDir := filepath.Join(n.dataDir, "raft")
		d := diskUsage{Node: n.id, LogBytes: dirBytes(filepath.Join(raftDir, "raft.db")),
			SnapBytes:  dirBytes(filepath.Join(raftDir, "snapshots")),
			StateBytes: dirBytes(filepath.Join(n.dataDir, "state")), Messages: st.Messages.LastMessage}
		if d.Messages > 0 {
			d.PerMessage = float64(d.LogBytes+d.SnapBytes+d.StateBytes) / float64(d.Messages)
		}
		out = append(out, d)
	}
	return out, nil
}

func (d diskUsage) String() string {
	return fmt.Sprintf("%s: Raft log %s MB + snapshots %s MB + store %s MB for %s messages = %.0f B/message",
		d.Node, mb(d.LogBytes), mb(d.SnapBytes), mb(d.StateBytes), human(float64(d.Messages)), d.PerMessage)
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

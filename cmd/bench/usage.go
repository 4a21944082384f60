package main

import (
	"bufio"
	"bytes"
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
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.rssKB = kb
		case "VmHWM":
			s.peakKB = kb
		case "RssAnon":
			s.anonKB = kb
		case "RssFile":
			s.fileKB = kb
		}
	}
	s.ok = true
	return s
}

// procField reads the first number after prefix on a line of a /proc file
// (0 if there is none), e.g. the soft "Max open files" limit of
// /proc/<pid>/limits.
func procField(path, prefix string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// usage is CPU and memory of one process over a phase.
type usage struct {
	Name   string  `json:"name"`
	CPUPct float64 `json:"cpu_pct"` // percent of one core
	RSSMB  float64 `json:"rss_mb"`  // at the end of the phase
	PeakMB float64 `json:"peak_rss_mb,omitempty"`
}

// proc is a process whose usage a phase measures.
type proc struct {
	name string
	pid  int
}

// usageMeter samples some processes, this one and the whole machine at
// the start and end of a phase.
type usageMeter struct {
	procs    []proc
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

// sampleAll reads procs, then this process (the last sample).
func sampleAll(procs []proc) []procSample {
	out := make([]procSample, 0, len(procs)+1)
	for _, p := range procs {
		out = append(out, readProc(strconv.Itoa(p.pid)))
	}
	return append(out, readProc("self"))
}

// startUsage starts measuring procs, this process and the machine.
func startUsage(procs []proc) *usageMeter {
	return &usageMeter{procs: procs, start: sampleAll(procs), machine0: readMachine()}
}

// Stop returns the usage of each process and of the benchmark process,
// then "others": the rest of the machine's busy time (other processes, and
// kernel work not charged to a process), in the same unit.
func (m *usageMeter) Stop() []usage {
	end := sampleAll(m.procs)
	mach := readMachine()
	out := make([]usage, 0, len(end)+1)
	var ours float64
	for i, e := range end {
		name := "bench"
		if i < len(m.procs) {
			name = m.procs[i].name
			if !e.ok {
				name += " (killed)" // no end reading: its CPU and memory are unknown
			}
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

// dirBytes is the space allocated to the files under path (what du says).
func dirBytes(path string) int64 {
	var total int64
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
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

func (d diskUsage) String() string {
	return fmt.Sprintf("%s: Raft log %s MB + snapshots %s MB + store %s MB for %s messages = %.0f B/message",
		d.Node, mb(d.LogBytes), mb(d.SnapBytes), mb(d.StateBytes), human(float64(d.Messages)), d.PerMessage)
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

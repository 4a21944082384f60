package main

import (
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

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

// readProc reads /proc/<pid>/stat and /proc/<pid>/status of p, as
// procfs.NewProc or procfs.Self return it; the sample is not ok if either
// could not be read.
func readProc(p procfs.Proc, err error) procSample {
	s := procSample{at: time.Now()}
	if err != nil {
		return s
	}
	stat, err := p.Stat()
	if err != nil {
		return s
	}
	s.cpu = stat.CPUTime()
	status, err := p.NewStatus()
	if err != nil {
		return s
	}
	// procfs gives bytes; /proc/<pid>/status has whole KiB.
	s.rssKB = int64(status.VmRSS / 1024)
	s.peakKB = int64(status.VmHWM / 1024)
	s.anonKB = int64(status.RssAnon / 1024)
	s.fileKB = int64(status.RssFile / 1024)
	s.ok = true
	return s
}

// openFileLimit is the soft "Max open files" limit of p, from
// /proc/<pid>/limits (0 if it cannot be read or is unlimited).
func openFileLimit(p procfs.Proc, err error) int64 {
	if err != nil {
		return 0
	}
	l, err := p.Limits()
	if err != nil || l.OpenFiles > math.MaxInt64 {
		return 0
	}
	return int64(l.OpenFiles)
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

// machineSample is the busy and total CPU time of every CPU, in seconds,
// from the first line of /proc/stat.
type machineSample struct {
	busy, total float64
	ok          bool
}

// readMachine reads the CPU totals of /proc/stat (not ok if it cannot).
func readMachine() machineSample {
	pfs, err := procfs.NewDefaultFS()
	if err != nil {
		return machineSample{}
	}
	stat, err := pfs.Stat()
	if err != nil {
		return machineSample{}
	}
	// Guest time is already counted in user, and idle and iowait are not
	// busy.
	c := stat.CPUTotal
	busy := c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	return machineSample{busy: busy, total: busy + c.Idle + c.Iowait, ok: true}
}

// sampleAll reads procs, then this process (the last sample).
func sampleAll(procs []proc) []procSample {
	out := make([]procSample, 0, len(procs)+1)
	for _, p := range procs {
		out = append(out, readProc(procfs.NewProc(p.pid)))
	}
	return append(out, readProc(procfs.Self()))
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

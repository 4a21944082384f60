package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// idleTargetKiB is the memory target per idle connection on a node
// (issue 16: 8 KiB at 100,000 connections).
const idleTargetKiB = 8

// memReading is the memory of the node under test (after a forced garbage
// collection), of the other nodes and of the machine's TCP sockets.
type memReading struct {
	node                  procSample // VmRSS, RssAnon, RssFile
	others                []procSample
	m                     samples // the node's go_memstats_* and go_goroutines
	gcForced              bool
	tcpInUse, tcpMemPages int64 // /proc/net/sockstat, the whole machine
}

// readMemory forces a GC on the node (the heap profile endpoint runs one
// with gc=1), gives the runtime a moment to return freed pages, then
// reads the memory.
func (b *bench) readMemory(ctx context.Context, target int) (memReading, error) {
	var m memReading
	n := b.cl.nodes[target]
	if _, err := b.cl.get(ctx, n.url+"/debug/pprof/heap?gc=1"); err == nil {
		m.gcForced = true
	} else {
		b.logf("idle: could not force a GC on %s (figures include garbage): %v", n.id, err)
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return m, ctx.Err()
	}
	var err error
	if m.m, err = b.cl.scrape(ctx, n); err != nil {
		return m, err
	}
	for i, s := range sampleAll(b.cl.procs())[:len(b.cl.nodes)] {
		if i == target {
			m.node = s
		} else {
			m.others = append(m.others, s)
		}
	}
	m.tcpInUse, m.tcpMemPages = sockstat()
	return m, nil
}

// sockstat reads the TCP line of /proc/net/sockstat: sockets in use and
// pages of socket buffers (0 for what it cannot read).
func sockstat() (inuse, memPages int64) {
	pfs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, 0
	}
	st, err := pfs.NetSockstat()
	if err != nil {
		return 0, 0
	}
	for _, p := range st.Protocols {
		if p.Protocol == "TCP" {
			inuse = int64(p.InUse)
			if p.Mem != nil {
				memPages = int64(*p.Mem)
			}
		}
	}
	return inuse, memPages
}

// checkIdleLimits fails early when a limit this machine sets is below
// the connections asked for, naming the limit.
func (b *bench) checkIdleLimits(r *result, target int, conns int) error {
	const margin = 256 // the node's and the benchmark's other files and sockets
	n := b.cl.nodes[target]
	lim := openFileLimit(procfs.NewProc(n.Pid()))
	r.add("node open-file limit (/proc/<pid>/limits)", float64(lim), "files")
	if lim > 0 && lim < int64(conns+margin) {
		return fmt.Errorf("%s's open-file limit is %d, below %d connections + %d; raise the hard limit (ulimit -Hn) the benchmark starts under",
			n.id, lim, conns, margin)
	}
	lim = openFileLimit(procfs.Self())
	r.add("bench open-file limit", float64(lim), "files")
	if lim > 0 && lim < int64(conns+margin) {
		return fmt.Errorf("the benchmark's open-file limit is %d, below %d connections + %d; raise the hard limit (ulimit -Hn)", lim, conns, margin)
	}
	// The most connections one client address can open to one server
	// address.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			if ports := hi - lo + 1; conns > ports-margin {
				return fmt.Errorf("%d connections from one client address to one node need more than the %d ephemeral ports of net.ipv4.ip_local_port_range", conns, ports)
			}
		}
	}
	return nil
}

// waitConnections waits until each of the endpoint's counts in the node's
// /admin/status (idleCountKeys) has grown from base by held, the
// connections still open (the server may close some while they open); it
// returns held.
func (b *bench) waitConnections(ctx context.Context, n *benchNode, endpoint string, set []*hubClient, base map[string]int, timeout time.Duration) (int, error) {
	var held int
	err := poll(ctx, timeout, 200*time.Millisecond, func() (bool, string) {
		d, _ := dropped(set)
		held = len(set) - d
		st, err := b.cl.status(ctx, n)
		if err != nil {
			return false, err.Error()
		}
		counted := true
		var got []string
		for _, key := range idleCountKeys[endpoint] {
			counted = counted && st.Connections[key] == base[key]+held
			got = append(got, fmt.Sprintf("%s %d", key, st.Connections[key]-base[key]))
		}
		return counted, fmt.Sprintf("%s counts %s, want %d each (%d opened, %d of them ended)", n.id, strings.Join(got, ", "), held, len(set), d)
	})
	return held, err
}

// idle: N idle WebSocket connections to one node, the leader: SignalR
// (negotiate, upgrade, JSON handshake; the default), native streams or
// SignalR 2 (-idle-endpoint); memory per connection on the node, and its
// CPU while it holds them.
func (b *bench) idle(ctx context.Context, r *result) error {
	const hub = "bench_idle"
	conns := b.cfg.idleConns
	target, err := b.cl.leader(ctx)
	if err != nil {
		return err
	}
	n := b.cl.nodes[target]
	endpoint := b.cfg.idleEndpoint
	r.Params = map[string]any{"connections": conns, "node": n.id, "hold_s": b.cfg.duration.Seconds(), "endpoint": endpoint}
	r.Description = fmt.Sprintf("%d idle %s WebSocket connections to %s (the leader); CPU while holding them for %s; memory before opening them and at the end of the hold, each after a forced GC",
		conns, endpoint, n.id, b.cfg.duration)
	if err := b.checkIdleLimits(r, target, conns); err != nil {
		return err
	}
	st0, err := b.cl.status(ctx, n)
	if err != nil {
		return err
	}
	before, err := b.readMemory(ctx, target)
	if err != nil {
		return err
	}

	opened := &counter{name: "opened"}
	prog := startProgress(b.stderr, "idle", opened)
	b.logf("idle: opening %d connections to %s", conns, n.id)
	start := time.Now()
	clients, err := b.dialIdle(ctx, endpoint, hub, target, conns, opened)
	prog.Stop()
	if err != nil {
		return fmt.Errorf("opened %d of %d connections, then: %w", opened.Load(), conns, err)
	}
	defer closeAll(clients)
	held, err := b.waitConnections(ctx, n, endpoint, clients, st0.Connections, 30*time.Second+time.Duration(conns)*time.Millisecond)
	if d, why := dropped(clients); d > 0 {
		// Seen: a node's start-up sweep of connections "held by an
		// earlier run" expiring connections that were opening.
		r.addNote("%d of %d connections were closed by the server while they opened; the figures are per connection held (%d). The first reason: %s",
			d, conns, held, why)
	}
	if err != nil {
		return fmt.Errorf("%w; the end of %s's log:\n%s", err, n.id, n.logTail())
	}
	if held == 0 {
		return fmt.Errorf("no connection stayed open")
	}
	r.add("connections opened/s (32 at a time, until counted)", float64(conns)/time.Since(start).Seconds(), "conn/s")

	droppedBefore, _ := dropped(clients)
	m0, e0, _ := b.cl.logTotals(ctx)
	holdStart := time.Now()
	w := b.start(ctx, r)
	select {
	case <-time.After(b.cfg.duration):
	case <-ctx.Done():
	}
	w.stop(ctx)
	if m1, e1, err := b.cl.logTotals(ctx); err == nil && e1 >= e0 {
		r.add("Raft entries/s while the connections idle", float64(e1-e0)/time.Since(holdStart).Seconds(), "entry/s")
		if m1 > m0 {
			r.addNote("%d messages were published while idle (another client?)", m1-m0)
		}
	}
	if d, why := dropped(clients); d > droppedBefore {
		r.addNote("%d connections were dropped while idle: %s", d-droppedBefore, why)
	}
	// Memory is read once the connections have idled for the hold: an
	// idle connection's reader parks after 1 s without a byte.
	after, err := b.readMemory(ctx, target)
	if err != nil {
		return err
	}

	perKB := func(d int64) float64 { return float64(d) / float64(held) }
	// per is a /metrics figure's growth in KiB per connection (or in
	// units, for goroutines).
	per := func(name string, unit float64) float64 {
		return (after.m[name] - before.m[name]) / float64(held) / unit
	}
	rss := r.add("node: RSS per connection (ΔVmRSS / N)", perKB(after.node.rssKB-before.node.rssKB), "KiB")
	rss.Versus = append(rss.Versus, comparison{Baseline: fmt.Sprintf("target ≤ %d KiB", idleTargetKiB), What: "KiB",
		Value: idleTargetKiB, Ratio: rss.Value / idleTargetKiB})
	if after.node.anonKB > 0 {
		r.add("node:   of which anonymous (ΔRssAnon / N)", perKB(after.node.anonKB-before.node.anonKB), "KiB")
		r.add("node:   of which mapped files (ΔRssFile / N)", perKB(after.node.fileKB-before.node.fileKB), "KiB")
	}
	r.add("node: Go heap in use per connection (Δheap_inuse / N)", per("go_memstats_heap_inuse_bytes", 1024), "KiB")
	r.add("node: live heap per connection (Δheap_alloc after GC / N)", per("go_memstats_heap_alloc_bytes", 1024), "KiB")
	r.add("node: goroutine stacks per connection (Δstack_inuse / N)", per("go_memstats_stack_inuse_bytes", 1024), "KiB")
	r.add("node: goroutines per connection", per("go_goroutines", 1), "")
	if len(after.others) > 0 && len(after.others) == len(before.others) {
		var d int64
		for i := range after.others {
			d += after.others[i].rssKB - before.others[i].rssKB
		}
		r.add("other nodes: RSS per connection, mean (ΔVmRSS / N)", perKB(d)/float64(len(after.others)), "KiB")
	}

	mib := func(m samples, name string) string { return fmt.Sprintf("%.1f", m[name]/(1<<20)) }
	r.addNote("%s: VmRSS %.1f → %.1f MB (RssAnon %.1f → %.1f, RssFile %.1f → %.1f); heap in use %s → %s MB; stacks %s → %s MB; goroutines %.0f → %.0f",
		n.id, float64(before.node.rssKB)/1024, float64(after.node.rssKB)/1024,
		float64(before.node.anonKB)/1024, float64(after.node.anonKB)/1024, float64(before.node.fileKB)/1024, float64(after.node.fileKB)/1024,
		mib(before.m, "go_memstats_heap_inuse_bytes"), mib(after.m, "go_memstats_heap_inuse_bytes"),
		mib(before.m, "go_memstats_stack_inuse_bytes"), mib(after.m, "go_memstats_stack_inuse_bytes"),
		before.m["go_goroutines"], after.m["go_goroutines"])
	if pageKB := int64(os.Getpagesize() / 1024); after.tcpInUse > 0 {
		r.addNote("kernel (whole machine, not in any RSS): TCP sockets in use %d → %d, TCP buffer memory %d → %d KiB",
			before.tcpInUse, after.tcpInUse, before.tcpMemPages*pageKB, after.tcpMemPages*pageKB)
	}
	if !before.gcForced || !after.gcForced {
		r.addNote("no GC could be forced on %s: the heap figures include garbage", n.id)
	}
	return nil
}

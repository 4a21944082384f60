package signalr

import (
	"github.com/backplane/backplane/internal/monotime"

	"context"
	"sync/atomic"
	"time"
)

// pingWriters bounds the goroutines that write one sweep's keep-alive
// Pings to idle WebSockets (see writeIdle).
const pingWriters = 4

// reapLoop ends negotiated connections that never connected, long-polling
// connections whose client stopped polling, connections whose token
// expired, and clients silent past the client timeout.
func (s *Server) reapLoop() {
	s.runEvery(min(time.Second, s.opts.KeepAlive/3), s.reap)
}

// runEvery calls f with the tick's time every interval until the server
// stops.
func (s *Server) runEvery(interval time.Duration, f func(now time.Time)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			f(now)
		}
	}
}

// reap is one sweep. Sweeps run one at a time (tests sweep beside the
// loop).
func (s *Server) reap(now time.Time) {
	s.reapMu.Lock()
	defer s.reapMu.Unlock()
	// Closes and takeovers come through the log: look for them only when
	// the store changed since the last sweep (an idle node reads nothing).
	applied := s.cluster.AppliedIndex()
	storeChanged := applied != s.lastReapApplied
	s.lastReapApplied = applied
	var idle []*socket // sockets pinged whose writer must run
	for _, c := range s.heldConns() {
		if sock := c.socketOf(); sock != nil {
			sock.retireIdle(now)
		}
		s.carryOut(c, now, c.due(now, &s.opts, storeChanged), &idle)
	}
	writeIdle(idle)
}

// writeIdle runs the writers of the idle sockets a sweep pinged on at
// most pingWriters goroutines, without waiting for them (a write stuck on
// a full socket must not hold up the reaper). Starting a writer per
// socket, as a send does, would start thousands of goroutines at once on
// a node holding thousands of idle connections, and the Go runtime keeps
// every goroutine descriptor it ever made (~0.5 KiB each).
func writeIdle(socks []*socket) {
	var next atomic.Int64
	for range min(len(socks), pingWriters) {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(socks) {
					return
				}
				socks[i].runWriter(false)
			}
		}()
	}
}

// carryOut does what the reaper found due for a connection. A WebSocket
// whose Ping it queued and whose writer it claimed is added to idle.
func (s *Server) carryOut(c *conn, now time.Time, d duty, idle *[]*socket) {
	switch d {
	case dutyForget:
		s.forget(c)
	case dutyCheckStore:
		if s.closedByCluster(c) {
			c.abort("closed through the REST API or expired by the cluster")
			return
		}
		s.carryOut(c, now, c.due(now, &s.opts, false), idle)
	case dutyEndNotResumed:
		c.end("", false, "not resumed in time")
	case dutyEndTokenExpired:
		c.end("", true, "access token expired")
	case dutyEndNeverConnected:
		c.end("", false, "negotiated but never connected")
	case dutyEndPollingStopped:
		c.end("", false, "long-polling client stopped polling")
		s.forget(c) // nobody is polling to be told
	case dutyEndClientTimeout:
		// As ASP.NET: a Close that allows reconnecting, without an error.
		c.end("", true, "client timeout")
	case dutyEndHandshakeTimeout:
		// As ASP.NET: the client is told before the transport closes.
		c.failHandshake("Handshake was canceled.")
	case dutyPing:
		if p := c.protocolOf(); p != nil {
			c.lastWrite.Store(monotime.At(now))
			if sock := c.queuePing(p.PingRecord()); sock != nil {
				*idle = append(*idle, sock)
			}
		}
	}
}

// expireOrphans removes from the replicated state the connections that an
// earlier run of this node held: they died with it. It waits until this
// node has caught up with the log, and retries until it succeeds once.
func (s *Server) expireOrphans() {
	backoff := time.Second
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if s.expireOrphansOnce() {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Server) expireOrphansOnce() bool {
	if !s.cluster.Ready() {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
	defer cancel()
	n, err := s.cluster.ExpireConnections(ctx, s.cluster.NodeID(), "holder restarted", s.holdsConnection())
	if err != nil {
		s.log.Warn("expire connections of an earlier run", "err", err)
		return false
	}
	if n > 0 {
		s.log.Info("expired connections held by an earlier run of this node", "count", n)
	}
	return true
}

// holdsConnection returns a function that reports whether this node holds
// a connection, active or still opening, as of the function's first call.
func (s *Server) holdsConnection() func(hub, connID string) bool {
	var held map[string]bool
	return func(hub, connID string) bool {
		if held == nil {
			s.mu.RLock()
			held = make(map[string]bool, len(s.byToken))
			for _, c := range s.byToken {
				held[c.hub+"\x00"+c.id] = true
			}
			s.mu.RUnlock()
		}
		return held[hub+"\x00"+connID]
	}
}

// closedByCluster reports whether the replicated state no longer records an
// active connection as open: someone closed it through the REST API. It
// only trusts the store once it has applied the entry that opened the
// connection. A connection that another node now holds is let go of.
func (s *Server) closedByCluster(c *conn) bool {
	openEntry := c.openEntryOf()
	if openEntry == 0 || s.cluster.AppliedIndex() < openEntry {
		return false
	}
	holder, open, err := s.cluster.ConnectionHolder(c.hub, c.id)
	if err == nil && open && holder != s.cluster.NodeID() {
		// A stateful connection resumed on another node: let go of it
		// without closing it in the cluster.
		c.moveAway()
		c.end("", false, "resumed on node "+holder)
		return false
	}
	return err == nil && !open
}

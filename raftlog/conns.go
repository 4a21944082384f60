package raftlog

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errStopping: the member is shutting down and opens no more Raft
// connections.
var errStopping = errors.New("raftlog: raft is shutting down")

// trackedStream is the Raft stream layer with every connection it opened or
// accepted on record, so Shutdown can end them all.
//
// raft.Shutdown waits for its replication goroutines, and one of them can
// sit in an RPC to a member that accepted the connection but no longer
// answers (a hung process, a black-holed network): the transport's I/O
// timeout (10 s) bounds each call, and after a failure raft's best-effort
// last replication dials again. Measured before this existed, a leader with
// one unresponsive follower took 19.6 s to shut down. Closing the
// connections after raft is told to stop, and refusing new dials, ends
// those calls at once.
//
// It also keeps addresses of members just removed from being dialled
// (membership.go says why).
type trackedStream struct {
	raft.StreamLayer

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
	blocked map[raft.ServerAddress]time.Time // address -> dials refused until then
}

func newTrackedStream(s raft.StreamLayer) *trackedStream {
	return &trackedStream{StreamLayer: s, conns: map[net.Conn]struct{}{}, blocked: map[raft.ServerAddress]time.Time{}}
}

// Dial opens a connection to another member, unless the member is stopping.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if err := s.mayDial(address); err != nil {
		return nil, err
	}
	c, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	if err := s.mayDial(address); err != nil { // blocked while dialling
		_ = c.Close()
		return nil, err
	}
	return s.track(c, address)
}

// mayDial refuses a dial while stopping or to a blocked address.
func (s *trackedStream) mayDial(address raft.ServerAddress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopping
	}
	if until, ok := s.blocked[address]; ok && time.Now().Before(until) {
		return fmt.Errorf("raftlog: %s was just removed from the cluster; no connections to it until %s", address, until.Format(time.RFC3339))
	}
	return nil
}

// block refuses dials to address until the given time, and closes the
// connections open to it now.
func (s *trackedStream) block(address raft.ServerAddress, until time.Time) {
	s.mu.Lock()
	s.blocked[address] = until
	var open []*trackedConn
	for c := range s.conns {
		if tc := c.(*trackedConn); tc.addr == address {
			open = append(open, tc)
		}
	}
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Conn.Close()
	}
}

// blockedUntil is when dials to address are allowed again (zero if they
// are).
func (s *trackedStream) blockedUntil(address raft.ServerAddress) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := s.blocked[address]
	if !time.Now().Before(until) {
		delete(s.blocked, address)
		return time.Time{}
	}
	return until
}

// Accept waits for a connection from another member.
func (s *trackedStream) Accept() (net.Conn, error) {
	for {
		c, err := s.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		if tc, err := s.track(c, ""); err == nil {
			return tc, nil
		}
		// Stopping: refuse the connection and wait for the listener to close.
	}
}

// track records c (dialled to addr, or accepted when addr is empty), or
// closes it when the member is stopping.
func (s *trackedStream) track(c net.Conn, addr raft.ServerAddress) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		_ = c.Close()
		return nil, errStopping
	}
	tc := &trackedConn{Conn: c, s: s, addr: addr}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// stop refuses new connections and closes every open one, which ends the
// RPCs waiting on them with an error.
func (s *trackedStream) stop() {
	s.mu.Lock()
	s.stopped = true
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.(*trackedConn).Conn.Close()
	}
}

// trackedConn leaves the record when it is closed.
type trackedConn struct {
	net.Conn
	s    *trackedStream
	addr raft.ServerAddress // the address dialled; empty if accepted
	once sync.Once
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

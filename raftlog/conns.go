package raftlog

import (
	"errors"
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
type trackedStream struct {
	raft.StreamLayer

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
}

func newTrackedStream(s raft.StreamLayer) *trackedStream {
	return &trackedStream{StreamLayer: s, conns: map[net.Conn]struct{}{}}
}

// Dial opens a connection to another member, unless the member is stopping.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.isStopped() {
		return nil, errStopping
	}
	c, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Accept waits for a connection from another member.
func (s *trackedStream) Accept() (net.Conn, error) {
	for {
		c, err := s.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		if tc, err := s.track(c); err == nil {
			return tc, nil
		}
		// Stopping: refuse the connection and wait for the listener to close.
	}
}

// track records c, or closes it when the member is stopping.
func (s *trackedStream) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		_ = c.Close()
		return nil, errStopping
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *trackedStream) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
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

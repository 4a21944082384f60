package netconn

import (
	"net"
	"sync"
)

var shared struct {
	once sync.Once
	p    *Parker
	err  error
}

// Shared returns the process's Parker, started at the first call; it runs
// for the life of the process. Where the platform has no Parker it returns
// an error wrapping errors.ErrUnsupported.
func Shared() (*Parker, error) {
	shared.once.Do(func() { shared.p, shared.err = NewParker() })
	return shared.p, shared.err
}

// WatchedConn is a connection with a Watch: closing it cancels the Watch
// first, so the Parker never holds the descriptor of a closed socket.
type WatchedConn struct {
	net.Conn
	Watch *Watch
}

// Close cancels the Watch (a parked reader resumes and finds the
// connection closed) and closes the connection.
func (c *WatchedConn) Close() error {
	c.Watch.Cancel()
	return c.Conn.Close()
}

// NetConn is the connection underneath, as (*tls.Conn).NetConn.
func (c *WatchedConn) NetConn() net.Conn { return c.Conn }

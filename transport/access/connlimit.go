package access

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// ErrTooManyConnections is why a client connection is refused (429) when
// its remote address already holds as many as ConnLimit allows.
var ErrTooManyConnections = errors.New("too many connections")

// ConnLimit counts a node's concurrent client connections per remote
// address and refuses one more past its maximum. The native streams and
// the SignalR endpoint share one, so an address has one budget on a node.
// The address is the host of the request's RemoteAddr, the peer that
// opened the TCP connection: X-Forwarded-For is not trusted, so clients
// behind one proxy share its address. A nil *ConnLimit allows everything.
type ConnLimit struct {
	max   int
	mu    sync.Mutex
	count map[string]int // addresses with at least one connection
}

// NewConnLimit allows max concurrent connections per address; max <= 0
// returns nil, which allows any number.
func NewConnLimit(max int) *ConnLimit {
	if max <= 0 {
		return nil
	}
	return &ConnLimit{max: max, count: map[string]int{}}
}

// Acquire counts one more connection from r's address, or returns an
// error wrapping ErrTooManyConnections when the address already holds the
// maximum. release undoes the count; calling it again does nothing.
func (l *ConnLimit) Acquire(r *http.Request) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	addr := remoteHost(r)
	l.mu.Lock()
	if l.count[addr] >= l.max {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w from %s: at most %d concurrent connections per address", ErrTooManyConnections, addr, l.max)
	}
	l.count[addr]++
	l.mu.Unlock()
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		l.mu.Lock()
		if l.count[addr]--; l.count[addr] <= 0 {
			delete(l.count, addr)
		}
		l.mu.Unlock()
	}, nil
}

// Count is how many connections an address (a host, as in RemoteAddr)
// holds.
func (l *ConnLimit) Count(addr string) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[addr]
}

func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

package signalr

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/hubproto"
)

// What one client may add to the replicated state is bounded per
// connection: its relay invocations by a token bucket (InvocationRate per
// second, InvocationBurst at once), the groups it is in by a count
// (MaxGroupsPerConnection), and its connections per remote address by the
// node's transport.ConnLimit. An invocation over a limit gets an error
// Completion and proposes nothing; the connection stays open.

// connLimits is a connection's share of the limits.
type connLimits struct {
	mu     sync.Mutex
	bucket access.RateBucket // the invocation rate
	// groups holds the groups the connection is in or is joining, by the
	// SHA-256 of their name (names are up to 4 KB). Nil while it has none.
	groups map[[sha256.Size]byte]*groupSlot

	release func() // gives back the connection's count at its address; nil: not counted
}

// groupSlot is one group a connection is in, or may be.
type groupSlot struct {
	joined  bool // a join committed, or may have (its outcome is unknown)
	joining int  // joins queued or being committed
}

// groupChange is the JoinGroup or LeaveGroup an invocation asks for,
// settled against the count when its result comes back.
type groupChange struct {
	key  [sha256.Size]byte
	join bool
}

// outcome is what became of a proposed command.
type outcome int

const (
	committed outcome = iota
	rejected          // the state machine refused it: nothing changed
	unknown           // the proposal failed: it may or may not have committed
)

// outcomeOf is the outcome of relay invocation i of a batch that the
// cluster answered with res and err.
func outcomeOf(err error, res []RelayOutcome, i int) outcome {
	switch {
	case err != nil:
		return unknown
	case res[i].Err != nil:
		return rejected
	}
	return committed
}

// outcomeOfOne is the outcome of a change whose only answer is err.
func outcomeOfOne(err error) outcome {
	switch {
	case errors.Is(err, ErrRejected):
		return rejected
	case err != nil:
		return unknown
	}
	return committed
}

// overRate takes a token from the connection's bucket for an invocation,
// or returns the error message of an invocation over the rate.
func (c *conn) overRate(m *hubproto.Message) string {
	if c.allowInvocation(time.Now()) {
		return ""
	}
	return fmt.Sprintf("Failed to invoke '%s': rate limit exceeded (%g invocations/s per connection)", m.Target, c.srv.opts.InvocationRate)
}

// allowInvocation takes a token from the connection's bucket, or says the
// client is over the rate.
func (c *conn) allowInvocation(now time.Time) bool {
	rate := c.srv.opts.InvocationRate
	if rate <= 0 {
		return true
	}
	l := &c.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucket.Allow(now, rate, c.srv.opts.InvocationBurst)
}

// admitGroupChange counts a JoinGroup against the connection's groups and
// returns the change to settle once its result is known (nil when there
// is nothing to count), or the error message of a join past the limit. A
// group the connection is in, or joining, already has its slot; a leave
// frees the slot only once it has committed, so pipelined invocations
// never take the connection past the limit.
func (c *conn) admitGroupChange(m *hubproto.Message) (*groupChange, string) {
	limit := c.srv.opts.MaxGroupsPerConnection
	method := strings.ToLower(m.Target)
	if limit <= 0 || (method != methodJoinGroup && method != methodLeaveGroup) {
		return nil, ""
	}
	group, err := stringArg(m, 0, "the group name")
	if err != nil {
		return nil, "" // relayCommand has refused it
	}
	ch := &groupChange{key: sha256.Sum256([]byte(group)), join: method == methodJoinGroup}
	if !ch.join {
		return ch, ""
	}
	l := &c.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	slot := l.groups[ch.key]
	if slot == nil {
		if len(l.groups) >= limit {
			return nil, fmt.Sprintf("Failed to invoke '%s': group limit reached (at most %d groups per connection; leave one first)", m.Target, limit)
		}
		if l.groups == nil {
			l.groups = map[[sha256.Size]byte]*groupSlot{}
		}
		slot = &groupSlot{}
		l.groups[ch.key] = slot
	}
	slot.joining++
	return ch, ""
}

// settleGroupChange applies the result of a counted JoinGroup or
// LeaveGroup. A join whose outcome is unknown stays counted, and so does
// the group of such a leave: the count may be too high (the client can
// leave again) but never too low.
func (c *conn) settleGroupChange(ch *groupChange, o outcome) {
	if ch == nil {
		return
	}
	l := &c.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	slot := l.groups[ch.key]
	if slot == nil {
		return // left a group it did not join here (added through the REST API)
	}
	switch {
	case ch.join:
		slot.joining--
		if o != rejected {
			slot.joined = true
		}
	case o == committed:
		slot.joined = false
	}
	if !slot.joined && slot.joining <= 0 {
		delete(l.groups, ch.key)
	}
}

// groupCount is how many groups the connection is counted in.
func (c *conn) groupCount() int {
	c.limits.mu.Lock()
	defer c.limits.mu.Unlock()
	return len(c.limits.groups)
}

// releaseAddress gives back the connection's count at its address.
func (c *conn) releaseAddress() {
	c.limits.mu.Lock()
	release := c.limits.release
	c.limits.release = nil
	c.limits.mu.Unlock()
	if release != nil {
		release()
	}
}

// Per-address counting. A negotiate counts the connection it makes until
// the connection ends (serveNegotiate). A WebSocket that skips
// negotiation makes its connection on the spot, so it is counted while
// its socket is open: from the upgrade request until the hijacked
// network connection closes.

// skipsNegotiation reports whether r is a WebSocket upgrade without a
// connection token (serveHub then makes a connection on the spot).
func skipsNegotiation(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Get("id") == "" &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveCounted serves a WebSocket that skips negotiation, counted at its
// address while its socket is open; over the limit it answers 429.
func (s *Server) serveCounted(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	release, err := s.opts.ConnLimit.Acquire(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	cw := &countedWriter{ResponseWriter: w, release: release}
	h(cw, r)
	if !cw.hijacked {
		release()
	}
}

// countedWriter hands out the hijacked connection wrapped so that closing
// it gives back the address's count.
type countedWriter struct {
	http.ResponseWriter
	release  func()
	hijacked bool
}

func (w *countedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	return &countedConn{Conn: c, release: w.release}, brw, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *countedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countedConn is a hijacked connection that gives back its address's count
// when closed (release runs once).
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// NetConn is the connection underneath: netconn.LimitSendBuffer reaches
// the socket through it.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

// SyscallConn reaches the socket, so an idle reader can still wait on it
// through the poller (see netconn.ReadWaiter).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

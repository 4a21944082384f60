package netconn

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle WebSocket readers wait outside gorilla/websocket's read path, and
// park once idle.
//
// A goroutine blocked in a WebSocket read parks under a deep call chain,
// so it keeps a 4 KiB stack for as long as its connection is idle.
// Instead, a reader waits for the socket to become readable from a shallow
// frame (a MSG_PEEK through the runtime's network poller: ReadWaiter),
// where the garbage collector shrinks its stack to 2 KiB, and enters the
// WebSocket read only when bytes are waiting. It may wait only while
// gorilla holds no buffered bytes: the connection reads through a small
// bufio.Reader of ours, handed to gorilla as the hijacked reader (which
// gorilla reuses when the Upgrader's ReadBufferSize is 0), so its Buffered
// count tells.
//
// A reader that has waited a while without a byte parks: it hands the
// socket to the process's Parker and its goroutine ends, so an idle
// connection has no goroutine at all; the Parker starts a new reader when
// the socket is readable, hangs up or is closed (closing the socket
// cancels the parking first: see WatchedConn).

// HijackedReadBuffer is the size of the read buffer a Hijacker hands
// gorilla: it reuses a hijacked reader only when it is larger than 256
// bytes. Larger messages are read straight into their own slice.
const HijackedReadBuffer = 272

// Hijacker wraps a ResponseWriter for a WebSocket upgrade (the Upgrader's
// ReadBufferSize must be 0): at the hijack it hands gorilla a small read
// buffer of ours, keeps the connection so that a reader can wait for data
// without gorilla, and, where the socket can be parked, wraps it so that
// closing it cancels the parking.
type Hijacker struct {
	http.ResponseWriter
	br    *bufio.Reader
	conn  net.Conn
	watch *Watch // nil: the reader never parks
}

// Hijack takes over the connection from net/http.
func (h *Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		// gorilla refuses a client that sent data before the handshake; a
		// stream reads them (Read), without waiting outside.
		h.br = brw.Reader
		return c, brw, nil
	}
	h.br, h.conn = bufio.NewReaderSize(c, HijackedReadBuffer), c
	rw := bufio.NewReadWriter(h.br, brw.Writer)
	if p, err := Shared(); err == nil {
		if watch, err := p.Watch(c); err == nil {
			h.watch = watch
			return &WatchedConn{Conn: c, Watch: watch}, rw, nil
		}
	}
	return c, rw, nil
}

// Abandon undoes the watch after a failed upgrade.
func (h *Hijacker) Abandon() {
	if h.watch != nil {
		h.watch.Cancel()
	}
}

// IdleReader returns the reader's helper for the upgraded connection: it
// parks after parkAfter without a byte (0 or less: never).
func (h *Hijacker) IdleReader(parkAfter time.Duration) *IdleReader {
	ir := &IdleReader{br: h.br}
	if h.conn != nil {
		ir.readable = NewReadWaiter(h.conn)
		if ir.readable.raw != nil && parkAfter > 0 && h.watch != nil {
			ir.conn, ir.watch, ir.parkAfter = h.conn, h.watch, parkAfter
		}
	}
	return ir
}

// IdleReader waits until a WebSocket has bytes to read, or parks it.
type IdleReader struct {
	br       *bufio.Reader // gorilla's read buffer; nil if it is not ours
	readable *ReadWaiter   // nil: no way to wait outside gorilla, always read

	// Parking; watch is nil where the socket cannot be parked.
	conn      net.Conn // the socket under gorilla, for the wait's deadline
	watch     *Watch
	parkAfter time.Duration
	resume    func()
	parked    *atomic.Int64
}

// DefaultParkAfter is how long an idle reader waits on a goroutine of its
// own before it parks: longer than a busy client's gaps, far shorter than
// the 15 s keep-alive of SignalR clients.
const DefaultParkAfter = time.Second

// OnResume sets what runs, on a new goroutine, when a parked socket is
// readable again (a new reader), and the count of parked readers to keep
// (nil: none): one while the reader is parked. Without it, Wait never
// parks.
func (ir *IdleReader) OnResume(resume func(), parked *atomic.Int64) {
	if parked == nil {
		parked = new(atomic.Int64)
	}
	ir.parked = parked
	ir.resume = func() {
		parked.Add(-1)
		resume()
	}
}

// Wait returns true when gorilla has buffered bytes, the socket is
// readable, or the socket is closed or broken (the read then reports why).
// It returns false when the reader parked instead: the OnResume function
// then runs once the socket is readable, and the caller's goroutine must
// end.
func (ir *IdleReader) Wait() bool {
	if ir.readable == nil || ir.br.Buffered() > 0 {
		return true
	}
	if ir.watch == nil || ir.resume == nil {
		ir.readable.Wait()
		return true
	}
	// The deadline bounds only this wait, outside gorilla: gorilla treats a
	// read that times out as the end of the connection.
	_ = ir.conn.SetReadDeadline(time.Now().Add(ir.parkAfter))
	idle := ir.readable.Wait()
	_ = ir.conn.SetReadDeadline(time.Time{})
	if !idle {
		return true
	}
	ir.parked.Add(1) // before Park: resume, which takes it back, may run at once
	if !ir.watch.Park(ir.resume) {
		ir.parked.Add(-1)
		return true
	}
	return false
}

// Read reads what the client sent on a hijacked connection that is not a
// WebSocket (a stream whose client only ever hangs up), from the
// Hijacker's buffer; call it after Wait.
func (ir *IdleReader) Read(p []byte) (int, error) { return ir.br.Read(p) }

// ReadWaiter blocks a goroutine until a connection has bytes to read, from
// a shallow frame and without a buffer: a MSG_PEEK through the runtime's
// poller. Where the connection has no file descriptor to peek at (or the
// platform no MSG_PEEK), Wait returns at once and the caller just reads.
type ReadWaiter struct {
	raw  syscall.RawConn
	peek func(fd uintptr) bool // made once, so a wait allocates nothing
	one  [1]byte
}

// NewReadWaiter returns a ReadWaiter for c.
func NewReadWaiter(c net.Conn) *ReadWaiter {
	rw := &ReadWaiter{}
	rw.peek = peekReadable(&rw.one)
	if sc, ok := c.(syscall.Conn); ok && rw.peek != nil {
		if raw, err := sc.SyscallConn(); err == nil {
			rw.raw = raw
		}
	}
	return rw
}

// Wait returns when the connection is readable, closed or broken, or when
// its read deadline passes; it reports the last (the connection was idle
// until the deadline).
func (rw *ReadWaiter) Wait() (deadlinePassed bool) {
	if rw.raw == nil {
		return false
	}
	return errors.Is(rw.raw.Read(rw.peek), os.ErrDeadlineExceeded)
}

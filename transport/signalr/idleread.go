package signalr

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// Idle WebSocket readers park outside gorilla/websocket's read path.
//
// A goroutine blocked in ws.ReadMessage parks under a deep call chain, so
// it keeps a 4 KiB stack for as long as its connection is idle. Instead, a
// reader waits for the socket to become readable from a shallow frame (a
// MSG_PEEK through the runtime's network poller), where the garbage
// collector shrinks its stack to 2 KiB, and enters ReadMessage only when
// bytes are waiting. It may wait only while gorilla holds no buffered
// bytes: the connection reads through a bufio.Reader of ours, handed to
// gorilla as the hijacked reader (which gorilla then reuses), so its
// Buffered count tells.
//
// A reader that has waited parkAfter without a byte parks: it hands the
// socket to the process's netconn.Parker and its goroutine ends, so an idle
// connection has no goroutine at all; the Parker starts a new reader when
// the socket is readable, hangs up or is closed (the socket's Close cancels
// the parking first: see netconn.WatchedConn).

// socketReadBuffer is the size of a WebSocket's read buffer: gorilla
// reuses a hijacked reader only when it is larger than 256 bytes. Larger
// messages are read straight into their own slice.
const socketReadBuffer = 272

// upgrader keeps an idle connection small: the read buffer is the hijacked
// one (ReadBufferSize 0: see hijackWriter), and write buffers are shared
// through a pool (held only while a frame is written).
var upgrader = websocket.Upgrader{
	WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true }, // checked by the caller
}

// hijackWriter hands gorilla a small read buffer of ours at the upgrade,
// and keeps the connection so the reader can wait for data without it.
type hijackWriter struct {
	http.ResponseWriter
	br    *bufio.Reader
	conn  net.Conn
	watch *netconn.Watch // nil: the reader never parks
}

// Hijack takes over the connection from net/http. Where the socket can be
// parked, gorilla gets it wrapped so that closing it cancels the parking.
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		return c, brw, nil // gorilla refuses a client that sent data before the handshake
	}
	h.br, h.conn = bufio.NewReaderSize(c, socketReadBuffer), c
	rw := bufio.NewReadWriter(h.br, brw.Writer)
	if p, err := netconn.Shared(); err == nil {
		if watch, err := p.Watch(c); err == nil {
			h.watch = watch
			return &netconn.WatchedConn{Conn: c, Watch: watch}, rw, nil
		}
	}
	return c, rw, nil
}

// upgradeSocket upgrades the request to a WebSocket whose reader can park
// while idle, parking after parkAfter without a byte (0: never).
func upgradeSocket(w http.ResponseWriter, r *http.Request, parkAfter time.Duration) (*websocket.Conn, *idleReader, error) {
	h := &hijackWriter{ResponseWriter: w}
	ws, err := upgrader.Upgrade(h, r, nil)
	if err != nil {
		if h.watch != nil {
			h.watch.Cancel()
		}
		return nil, nil, err
	}
	_ = netconn.LimitSendBuffer(ws.NetConn(), netconn.SendBuffer)
	ir := &idleReader{br: h.br}
	if h.conn != nil {
		ir.readable = newReadWaiter(h.conn)
		if ir.readable.raw != nil && parkAfter > 0 {
			ir.conn, ir.watch, ir.parkAfter = h.conn, h.watch, parkAfter
		}
	}
	return ws, ir, nil
}

// idleReader waits until a WebSocket has bytes to read.
type idleReader struct {
	br       *bufio.Reader // gorilla's read buffer; nil if it is not ours
	readable *readWaiter   // nil: no way to wait outside gorilla, always read

	// Parking; watch is nil where the socket cannot be parked.
	conn      net.Conn // the socket under gorilla, for the wait's deadline
	watch     *netconn.Watch
	parkAfter time.Duration
	resume    func()        // starts a new reader once a parked socket is readable
	parked    *atomic.Int64 // the server's count of parked readers
}

// wait returns true when gorilla has buffered bytes, the socket is
// readable, or the socket is closed or broken (ReadMessage then reports
// why). It returns false when the reader parked instead: ir.resume then
// runs on a new goroutine once the socket is readable, and the caller's
// goroutine must end.
func (ir *idleReader) wait() bool {
	if ir.readable == nil || ir.br.Buffered() > 0 {
		return true
	}
	if ir.watch == nil {
		ir.readable.wait()
		return true
	}
	// The deadline bounds only this wait, outside gorilla: gorilla treats a
	// read that times out as the end of the connection.
	_ = ir.conn.SetReadDeadline(time.Now().Add(ir.parkAfter))
	idle := ir.readable.wait()
	_ = ir.conn.SetReadDeadline(time.Time{})
	if !idle || ir.resume == nil {
		return true
	}
	ir.parked.Add(1) // before Park: resume, which takes it back, may run at once
	if !ir.watch.Park(ir.resume) {
		ir.parked.Add(-1)
		return true
	}
	return false
}

// readWaiter blocks a goroutine until a connection has bytes to read, from
// a shallow frame and without a buffer: a MSG_PEEK through the runtime's
// poller. Where the connection has no file descriptor to peek at (or the
// platform no MSG_PEEK), wait returns at once and the caller just reads.
type readWaiter struct {
	raw  syscall.RawConn
	peek func(fd uintptr) bool // made once, so a wait allocates nothing
	one  [1]byte
}

func newReadWaiter(c net.Conn) *readWaiter {
	rw := &readWaiter{}
	rw.peek = peekReadable(&rw.one)
	if sc, ok := c.(syscall.Conn); ok && rw.peek != nil {
		if raw, err := sc.SyscallConn(); err == nil {
			rw.raw = raw
		}
	}
	return rw
}

// wait returns when the connection is readable, closed or broken, or
// when its read deadline passes; it reports the last (the connection was
// idle until the deadline).
func (rw *readWaiter) wait() (deadlinePassed bool) {
	if rw.raw == nil {
		return false
	}
	return errors.Is(rw.raw.Read(rw.peek), os.ErrDeadlineExceeded)
}

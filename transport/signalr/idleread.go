package signalr

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"syscall"

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
	br   *bufio.Reader
	conn net.Conn
}

// Hijack takes over the connection from net/http.
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		return c, brw, nil // gorilla refuses a client that sent data before the handshake
	}
	h.br, h.conn = bufio.NewReaderSize(c, socketReadBuffer), c
	return c, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// upgradeSocket upgrades the request to a WebSocket whose reader can park
// while idle.
func upgradeSocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, *idleReader, error) {
	h := &hijackWriter{ResponseWriter: w}
	ws, err := upgrader.Upgrade(h, r, nil)
	if err != nil {
		return nil, nil, err
	}
	_ = netconn.LimitSendBuffer(ws.NetConn(), netconn.SendBuffer)
	ir := &idleReader{br: h.br}
	if h.conn != nil {
		ir.readable = newReadWaiter(h.conn)
	}
	return ws, ir, nil
}

// idleReader waits until a WebSocket has bytes to read.
type idleReader struct {
	br       *bufio.Reader // gorilla's read buffer; nil if it is not ours
	readable *readWaiter   // nil: no way to wait outside gorilla, always read
}

// wait returns when gorilla has buffered bytes, the socket is readable,
// or the socket is closed or broken (ReadMessage then reports why).
func (ir *idleReader) wait() {
	if ir.readable == nil || ir.br.Buffered() > 0 {
		return
	}
	ir.readable.wait()
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

// wait returns when the connection is readable, closed or broken.
func (rw *readWaiter) wait() {
	if rw.raw != nil {
		_ = rw.raw.Read(rw.peek)
	}
}

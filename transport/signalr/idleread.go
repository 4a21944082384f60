package signalr

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
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
// and keeps what the reader needs to wait for data without it.
type hijackWriter struct {
	http.ResponseWriter
	br  *bufio.Reader
	raw syscall.RawConn // nil when the connection has no file descriptor
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
	h.br = bufio.NewReaderSize(c, socketReadBuffer)
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.raw = raw
		}
	}
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
	ir := &idleReader{br: h.br, raw: h.raw}
	ir.peek = peekReadable(&ir.one)
	if h.br == nil || h.raw == nil || ir.peek == nil {
		ir.raw = nil // no way to wait outside gorilla: always read
	}
	return ws, ir, nil
}

// idleReader waits until a WebSocket has bytes to read.
type idleReader struct {
	br   *bufio.Reader
	raw  syscall.RawConn
	peek func(fd uintptr) bool // made once, so a wait allocates nothing
	one  [1]byte
}

// wait returns when gorilla has buffered bytes, the socket is readable,
// or the socket is closed or broken (ReadMessage then reports why).
func (ir *idleReader) wait() {
	if ir.raw == nil || ir.br.Buffered() > 0 {
		return
	}
	_ = ir.raw.Read(ir.peek)
}

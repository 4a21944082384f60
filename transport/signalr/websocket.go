package signalr

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/hubproto"
)

// maxFrameBytes bounds how many queued records one write coalesces.
const maxFrameBytes = 64 << 10

// serveWebSocket runs a connection over WebSocket. c is nil for a client
// that skipped negotiation: the connection is made on the spot.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn) {
	if !s.originAllowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if c == nil {
		id, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		c = s.newConn(r.PathValue("hub"), id)
		s.addPending(c)
	}
	if c.st != nil {
		s.resumeWebSocket(w, r, c, false)
		return
	}
	if err := c.attach(transportWebSockets); err != nil {
		status := http.StatusBadRequest
		if err == errConcurrent {
			status = http.StatusConflict
		}
		http.Error(w, err.Error(), status)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		c.end("", false, "websocket upgrade failed")
		return
	}
	// The socket runs on goroutines of its own: returning from the handler
	// lets net/http free the request's buffers, which an idle connection
	// would otherwise hold for its whole life.
	go s.runSocket(ws, c, c.newSocket())
}

// upgrader keeps an idle connection small: a 1 KiB read buffer, and write
// buffers shared through a pool (held only while a frame is written).
var upgrader = websocket.Upgrader{
	ReadBufferSize: 1024, WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true }, // checked by the caller
}

// socket is one WebSocket attached to a connection; a stateful connection
// outlives its sockets.
type socket struct {
	gone   chan struct{} // closed when the socket is dropped or replaced
	exited chan struct{} // closed when its writer has stopped
}

// newSocket attaches a new socket, replacing (and waiting out) an old one.
func (c *conn) newSocket() *socket {
	c.mu.Lock()
	old := c.sock
	if old != nil {
		close(old.gone)
	}
	sock := &socket{gone: make(chan struct{}), exited: make(chan struct{})}
	c.sock, c.detachedAt = sock, time.Time{}
	c.mu.Unlock()
	c.lastSeen.Store(time.Now().UnixNano()) // the client timeout counts from the resume
	if old != nil {
		select {
		case <-old.exited:
		case <-time.After(2 * time.Second):
		}
	}
	return sock
}

// socketLost handles the end of a socket: a Close frame from the client
// (or any drop of a connection without stateful reconnect) ends the
// connection; a stateful connection whose socket dropped waits for a
// resume.
func (c *conn) socketLost(sock *socket, err error) {
	var closeFrame *websocket.CloseError
	if errors.As(err, &closeFrame) && closeFrame.Code == websocket.CloseAbnormalClosure {
		closeFrame = nil // gorilla's name for a connection lost without a Close frame
	}
	if closeFrame != nil && c.st != nil {
		c.mu.Lock()
		replaced := c.sock != sock
		c.mu.Unlock()
		if replaced {
			return // a Close on a socket a resume already replaced
		}
	}
	if c.st == nil || closeFrame != nil {
		if closeFrame != nil {
			c.end("", false, "")
		} else {
			c.end("", true, "websocket closed")
		}
		return
	}
	c.mu.Lock()
	current := c.sock == sock
	if current {
		close(sock.gone)
		c.sock, c.detachedAt = nil, time.Now()
	}
	c.mu.Unlock()
	if current {
		c.st.mu.Lock()
		c.st.attached = false
		c.st.mu.Unlock()
		c.srv.log.Debug("stateful connection lost its socket; waiting for a resume", "conn", c.id)
	}
}

// runSocket reads client messages in a goroutine and writes until the
// socket or the connection ends.
func (s *Server) runSocket(ws *websocket.Conn, c *conn, sock *socket) {
	ws.SetReadLimit(int64(4*s.opts.MaxMessageSize + 1024))
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				c.socketLost(sock, err)
				return
			}
			c.receive(data)
		}
	}()
	s.writeWebSocket(ws, c, sock)
}

// resumeWebSocket takes a new socket for a stateful connection: the old
// socket, if any, is replaced; the client gets our Sequence and every
// unacknowledged message.
func (s *Server) resumeWebSocket(w http.ResponseWriter, r *http.Request, c *conn, authenticated bool) {
	if c.isEnding() {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	if !authenticated {
		id, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if s.opts.Authenticate != nil && id.UserID != c.user {
			http.Error(w, "the token names another user than the connection's", http.StatusUnauthorized)
			return
		}
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	sock := c.newSocket()
	c.prepareResume()
	s.log.Debug("stateful connection resumed", "conn", c.id, "hub", c.hub)
	go s.runSocket(ws, c, sock)
}

// writeWebSocket writes queued records, several per frame, until the
// socket or the connection ends. Keep-alive Pings are queued by the reaper
// when nothing was written for KeepAlive, so an idle socket has no timer.
func (s *Server) writeWebSocket(ws *websocket.Conn, c *conn, sock *socket) {
	defer close(sock.exited)
	defer ws.Close()
	lost := func() { c.socketLost(sock, errors.New("write failed")) }
	var buf []byte
	write := func(b []byte) bool {
		kind := websocket.TextMessage
		if p := c.protocolOf(); p != nil && p.TransferFormat() == hubproto.TransferFormatBinary {
			kind = websocket.BinaryMessage
		}
		_ = ws.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		c.lastWrite.Store(time.Now().UnixNano())
		return ws.WriteMessage(kind, b) == nil
	}
	for {
		select {
		case <-c.out.ready:
			buf = c.drain(buf[:0], maxFrameBytes)
			if len(buf) == 0 {
				continue
			}
			if !write(buf) {
				lost()
				return
			}
			if cap(buf) > 16<<10 {
				buf = nil // do not keep a burst's buffer for an idle connection
			}
		case <-sock.gone:
			return
		case <-c.done:
			buf = c.drain(buf[:0], 1<<30)
			if final := c.takeFinal(); final != nil {
				buf = append(buf, final...)
			}
			if len(buf) > 0 {
				write(buf)
			}
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		}
	}
}

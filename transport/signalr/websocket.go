package signalr

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/monotime"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/netconn"
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
		c = s.newConn(CanonicalHub(r.PathValue("hub")), randomID(), s.newToken(), id)
		if !s.admit(w, r, c) {
			return
		}
		s.addPending(c)
	}
	if c.mb != nil {
		s.resumeWebSocket(w, r, c, false)
		return
	}
	if !c.attachOrRefuse(w, transportWebSockets) {
		return
	}
	ws, idle, err := netconn.UpgradeWebSocket(w, r, s.opts.ParkIdleReaders)
	if err != nil {
		c.end("", false, "websocket upgrade failed")
		return
	}
	// The socket runs on goroutines of its own: returning from the handler
	// lets net/http free the request's buffers, which an idle connection
	// would otherwise hold for its whole life.
	sock := c.newSocket(ws)
	go s.runSocket(sock, idle)
	c.startReceiving() // what the client posted before the upgrade
}

// socket is one WebSocket attached to a connection; a stateful connection
// outlives its sockets. An idle socket costs one goroutine, its reader: the
// writer runs only while there is something to do (records queued, or the
// socket or the connection ending). When the queue empties, a writer that
// is streaming (it started less than streamingGap after the last writer
// that wrote) lingers for the next records, so a busy socket keeps one
// goroutine with its grown stack instead of starting one per message; the
// reaper retires a lingering writer after writerLinger without writes. Any
// other writer exits at once.
type socket struct {
	c      *conn
	out    frameConn       // what the writer writes to
	ws     *websocket.Conn // nil for an SSE stream
	exited chan struct{}   // closed when its writer has stopped for good
	gone   atomic.Bool     // the socket was dropped or replaced

	writing   atomic.Bool // a writer goroutine runs (or lingers)
	lingering atomic.Bool // the writer waits for records
	retire    atomic.Bool // set by the reaper: the lingering writer exits

	// Owned by the goroutine that set writing.
	stopped  bool      // the writer closed the socket; it never runs again
	deadline time.Time // the write deadline last set on the socket
	lastExit time.Time // when the last writer that wrote handed the socket back
}

const (
	// streamingGap: a writer that starts less than this after the last
	// writer that wrote something exited lingers when its queue empties.
	streamingGap = 100 * time.Millisecond
	// writerLinger: the reaper retires a writer that has lingered without
	// writing for this long.
	writerLinger = time.Second
)

// newSocket attaches a new socket, replacing (and waiting out) an old one.
func (c *conn) newSocket(ws *websocket.Conn) *socket {
	return c.attachFrames(wsFrames{ws}, ws)
}

// attachFrames attaches a new socket writing to out (ws is its WebSocket,
// nil for an SSE stream), replacing (and waiting out) an old one.
func (c *conn) attachFrames(out frameConn, ws *websocket.Conn) *socket {
	sock := &socket{c: c, out: out, ws: ws, exited: make(chan struct{})}
	old := c.attachSocket(sock)
	c.lastSeen.Store(monotime.Now()) // the client timeout counts from the resume
	if old != nil {
		old.wake()
		select {
		case <-old.exited:
		case <-time.After(2 * time.Second):
		}
	}
	return sock
}

// socketOf is the attached socket, nil when there is none.
func (c *conn) socketOf() *socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sock
}

// wakeWriter makes the attached socket's writer run, if there is a socket.
func (c *conn) wakeWriter() {
	if sock := c.socketOf(); sock != nil {
		sock.wake()
	}
}

// wake starts the writer goroutine unless one is running; a lingering
// writer is signalled instead.
func (sock *socket) wake() {
	if sock.writing.CompareAndSwap(false, true) {
		go sock.runWriter(true)
		return
	}
	sock.c.out.signal()
}

// runWriter writes until nothing is left to do; a streaming writer may
// linger (see socket) when mayLinger is set. Handing the socket back
// (writing = false) and then looking again closes the race with a wake
// that came while this writer was finishing: either that wake started a
// new writer, or this one sees the work and goes on.
func (sock *socket) runWriter(mayLinger bool) {
	streaming := mayLinger && !sock.lastExit.IsZero() && time.Since(sock.lastExit) < streamingGap
	wrote := false
	for {
		if sock.write() {
			wrote = true
		}
		if sock.stopped {
			close(sock.exited) // writing stays true: no writer starts again
			return
		}
		if streaming && sock.linger() {
			continue
		}
		if wrote {
			sock.lastExit = time.Now()
		}
		sock.writing.Store(false)
		if !sock.hasWork() || !sock.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// linger waits for more work; false once the reaper retired the writer.
// Every push, and every wake, signals the queue's ready channel.
func (sock *socket) linger() bool {
	sock.retire.Store(false)
	sock.lingering.Store(true)
	defer sock.lingering.Store(false)
	for !sock.hasWork() {
		<-sock.c.out.ready
		if sock.retire.Load() && !sock.hasWork() {
			return false
		}
	}
	return true
}

// retireIdle makes a writer that lingered without writing for writerLinger
// exit; the reaper calls it.
func (sock *socket) retireIdle(now time.Time) {
	if sock.lingering.Load() && monotime.Between(sock.c.lastWrite.Load(), now) >= writerLinger {
		sock.retire.Store(true)
		sock.c.out.signal()
	}
}

// hasWork reports whether records are queued or the socket must close.
func (sock *socket) hasWork() bool {
	return sock.gone.Load() || sock.c.isDone() || sock.c.out.pending()
}

// write writes queued records, several per frame, until the queue is
// empty, and reports whether it wrote any; when the socket was dropped or
// the connection ended, it writes what is left (and the Close message) and
// closes the socket. Keep-alive Pings are queued by the reaper when nothing
// was written for KeepAlive, so an idle socket has no timer and no writer.
func (sock *socket) write() (wrote bool) {
	c := sock.c
	stop := func() {
		sock.stopped = true
		_ = sock.out.close()
	}
	if sock.gone.Load() {
		stop()
		return
	}
	select {
	case <-c.done:
		buf := c.drain(nil, 1<<30)
		if final := c.takeFinal(); final != nil {
			buf = append(buf, final...)
		}
		if len(buf) > 0 {
			sock.writeFrame(buf)
		}
		sock.out.goodbye()
		stop()
		return
	default:
	}
	bp := frameBuffers.Get()
	defer frameBuffers.Put(bp)
	for {
		*bp = c.drain((*bp)[:0], maxFrameBytes)
		if len(*bp) == 0 {
			break
		}
		if !sock.writeFrame(*bp) {
			c.socketLost(sock, errors.New("write failed"))
			stop()
			return
		}
		wrote = true
	}
	return wrote
}

// frameBuffers holds the buffers writers coalesce records into, so an idle
// socket holds none.
var frameBuffers netconn.Buffers

// writeFrame writes one frame: a WebSocket message or an SSE event.
func (sock *socket) writeFrame(b []byte) bool {
	c := sock.c
	p := c.protocolOf()
	binary := p != nil && p.TransferFormat() == hubproto.TransferFormatBinary
	// Moving the deadline costs a timer update: do it only once half of
	// the write timeout is spent, so a stuck write fails within WriteDeadline/2
	// to WriteDeadline.
	now := time.Now()
	if timeout := c.srv.opts.WriteDeadline; sock.deadline.Sub(now) < timeout/2 {
		sock.deadline = now.Add(timeout)
		_ = sock.out.setWriteDeadline(sock.deadline)
	}
	c.lastWrite.Store(monotime.At(now))
	err := sock.out.writeFrame(b, binary)
	if isTimeout(err) {
		c.srv.slowClientCut(c, c.transportName())
	}
	return err == nil
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
	if closeFrame != nil && c.mb != nil {
		c.mu.Lock()
		replaced := c.sock != sock
		c.mu.Unlock()
		if replaced {
			return // a Close on a socket a resume already replaced
		}
	}
	if c.mb == nil || closeFrame != nil {
		if closeFrame != nil {
			c.end("", false, "")
		} else {
			c.end("", true, "websocket closed")
		}
		return
	}
	if c.socketDropped(sock) {
		c.mb.mu.Lock()
		c.mb.attached = false
		c.mb.mu.Unlock()
		c.srv.log.Debug("stateful connection lost its socket; waiting for a resume", "conn", c.id)
	}
}

// runSocket starts a socket: its writer runs on demand (see socket.wake),
// its reader reads client messages until the socket ends.
func (s *Server) runSocket(sock *socket, idle *netconn.IdleReader) {
	sock.ws.SetReadLimit(int64(4*s.opts.MaxMessageSize + 1024))
	sock.wake() // records queued before the socket was attached
	idle.OnResume(func() { s.readSocket(sock, idle) }, &s.parkedReaders)
	s.readSocket(sock, idle)
}

// readSocket reads client messages until the socket ends, waiting outside
// gorilla while idle, or until the socket stays idle long enough to park
// (see netconn.IdleReader): a new readSocket then takes over when it is
// readable.
func (s *Server) readSocket(sock *socket, idle *netconn.IdleReader) {
	c, ws := sock.c, sock.ws
	handled := make(chan struct{}, 1)
	for {
		if !idle.Wait() {
			return // parked
		}
		_, data, err := ws.ReadMessage()
		if err != nil {
			c.socketLost(sock, err)
			sock.wake() // the writer closes the socket
			return
		}
		// On a goroutine of its own, so that this one's stack stays small.
		go func() { c.receive(data); handled <- struct{}{} }()
		<-handled
	}
}

// resumeWebSocket takes a new socket for a stateful connection: the old
// socket, if any, is replaced; the client gets our Sequence and every
// unacknowledged message.
func (s *Server) resumeWebSocket(w http.ResponseWriter, r *http.Request, c *conn, authenticated bool) {
	if s.refuseWhileDraining(w, r) {
		return
	}
	if c.isEnding() {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	if !authenticated {
		if _, ok := s.authenticateAs(w, r, c.tokenUser); !ok {
			return
		}
	}
	ws, idle, err := netconn.UpgradeWebSocket(w, r, s.opts.ParkIdleReaders)
	if err != nil {
		return
	}
	sock := c.newSocket(ws)
	c.prepareResume()
	s.log.Debug("stateful connection resumed", "conn", c.id, "hub", c.hub)
	go s.runSocket(sock, idle)
}

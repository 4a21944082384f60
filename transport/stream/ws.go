package stream

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// serveWS streams a hub's messages over WebSocket, one JSON message per
// text frame; a reset is a frame {"reset":{"oldest":N}} first. The client
// sends nothing but control frames; it resumes by reconnecting with
// after=<last index it saw>. When the client's token expires, the stream
// closes with 1008 (policy violation) "access token expired".
//
// The handler returns once the stream is set up: a stream that has sent
// everything waits without a goroutine (its hub's next message starts a
// writer, see wsStream), and its reader parks when the client is quiet.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, grant access.Grant) {
	req, ok := s.openStream(w, r, grant)
	if !ok {
		return
	}
	// guard has already refused a browser origin that is neither this host
	// nor in AllowedOrigins.
	conn, idle, err := netconn.UpgradeWebSocket(w, r, s.opts.ParkIdleReaders)
	if err != nil {
		return // the upgrader has answered
	}
	s.ws.Add(1)

	st := &wsStream{detached: detached{s: s, reader: req.reader, remote: r.RemoteAddr, cleanups: keepSlot(r)}, conn: conn}
	st.dl = writeDeadline{timeout: s.opts.WriteTimeout, set: conn.SetWriteDeadline}
	after := req.after
	if req.fromNow {
		after = s.store.LastMessage()
	}
	st.after.Store(after)
	// A ping when nothing was written for KeepAlive (gorilla lets control
	// frames be written beside the writer).
	st.start(grant, st.send, st.finish, func() error {
		return conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.opts.WriteTimeout))
	}, st.end)

	// The reader handles control frames and notices the close; idle, it
	// parks (no goroutine) until the client sends or hangs up.
	conn.SetReadLimit(4 << 10)
	var read func()
	read = func() {
		for idle.Wait() {
			if _, _, err := conn.NextReader(); err != nil {
				st.end(errStreamEnded)
				return
			}
		}
	}
	idle.OnResume(read, &s.parkedWS)
	go read()

	st.pump.Run() // until it has sent what there is; then it waits without a goroutine
}

// wsStream is a native WebSocket stream. It has a goroutine only while it
// writes: its pump runs send, which asks the store for a wake-up at its
// hub's next message before each read, and ends once everything is sent.
// Its keep-alive pings the client on a timer; the server's context and
// the token's expiry (a callback and a timer) end it, through end (see
// detached).
type wsStream struct {
	detached
	conn *websocket.Conn
	// Owned by the writer (the pump runs one at a time).
	dl  writeDeadline
	buf []byte
}

// send writes pages until there is nothing more to send; false when the
// stream must end (the client or the store failed).
func (st *wsStream) send() bool {
	ok := st.sendPages(st)
	st.buf = idleBuffer(st.buf)
	return ok
}

// writePage sends a page's messages, a frame each (a reset first), moving
// the cursor with each.
func (st *wsStream) writePage(page *fsm.Page) bool {
	st.dl.extend()
	if page.Reset && !st.write(appendResetJSON(st.buf[:0], page.Oldest)) {
		return false
	}
	for i := range page.Messages {
		st.buf = appendMessageJSON(st.buf[:0], &page.Messages[i])
		if !st.write(st.buf) {
			return false
		}
		st.after.Store(page.Messages[i].Index)
	}
	st.after.Store(page.Next)
	return true
}

func (st *wsStream) readFailed(err error) {
	st.s.opts.Logger.Warn("ws read", "hub", st.reader.Hub, "err", err)
	st.s.closeWS(st.conn, websocket.CloseInternalServerErr, "read failed")
}

// write sends one text frame.
func (st *wsStream) write(b []byte) bool {
	if !st.dl.check(st.conn.WriteMessage(websocket.TextMessage, b)) {
		if st.dl.expired {
			st.s.slowClientCut("stream_ws", st.remote, st.reader.Hub, st.after.Load())
		}
		return false
	}
	st.life.Wrote()
	return true
}

// errStreamEnded is why a stream ends when its client went, a ping failed
// or the server stopped without a cause.
var errStreamEnded = errors.New("stream ended")

// end ends the stream once, telling the client why (the token expired,
// the node drains: resume after the cursor, or the stream ended).
func (st *wsStream) end(cause error) {
	if st.ending.Swap(true) {
		return
	}
	switch {
	case errors.Is(cause, errTokenExpired):
		st.s.closeWS(st.conn, websocket.ClosePolicyViolation, errTokenExpired.Error())
	case errors.Is(cause, ErrDraining):
		st.s.closeWS(st.conn, websocket.CloseServiceRestart, "node draining; resume after "+strconv.FormatUint(st.after.Load(), 10))
	default:
		st.s.closeWS(st.conn, websocket.CloseGoingAway, "stream ended")
	}
	st.finish()
}

// finish ends the stream once (see detached.finish).
func (st *wsStream) finish() { st.detached.finish(st.conn, &st.s.ws) }

func (s *Server) closeWS(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

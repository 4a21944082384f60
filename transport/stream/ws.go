package stream

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// wsUpgrader upgrades native WebSockets. guard has already refused a
// browser origin that is neither this host nor in AllowedOrigins. Write
// buffers come from a pool, held only while a message is written: an idle
// stream does not keep 16 KiB.
var wsUpgrader = websocket.Upgrader{
	// ReadBufferSize 0: gorilla reads through the netconn.Hijacker's small
	// buffer (a stream's client sends only control frames).
	WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true },
}

// serveWS streams a hub's messages over WebSocket, one JSON message per
// text frame; a reset is a frame {"reset":{"oldest":N}} first. The client
// sends nothing but control frames; it resumes by reconnecting with
// after=<last index it saw>. When the client's token expires, the stream
// closes with 1008 (policy violation) "access token expired".
//
// The handler returns once the stream is set up: a stream that has sent
// everything waits without a goroutine (its hub's next change starts a
// writer, see wsStream), and its reader parks when the client is quiet.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, grant access.Grant) {
	req, ok := s.openStream(w, r, grant)
	if !ok {
		return
	}
	h := &netconn.Hijacker{ResponseWriter: w}
	conn, err := wsUpgrader.Upgrade(h, r, nil)
	if err != nil {
		h.Abandon()
		return // the upgrader has answered
	}
	_ = netconn.LimitSendBuffer(conn.NetConn(), netconn.SendBuffer)
	s.ws.Add(1)

	st := &wsStream{s: s, conn: conn, reader: req.reader, remote: r.RemoteAddr, release: keepSlot(r)}
	st.dl = writeDeadline{timeout: s.opts.WriteTimeout, set: conn.SetWriteDeadline}
	after := req.after
	if req.fromNow {
		after = s.store.LastMessage()
	}
	st.after.Store(after)
	st.ctx, st.cancel = untilExpiry(s.opts.Context, grant)
	st.lastWrite.Store(time.Now().UnixNano())
	st.mu.Lock()
	st.keepAlive = time.AfterFunc(s.opts.KeepAlive, st.ping)
	st.running = true // this goroutine writes first
	st.mu.Unlock()
	context.AfterFunc(st.ctx, st.ended)

	// The reader handles control frames and notices the close; idle, it
	// parks (no goroutine) until the client sends or hangs up.
	conn.SetReadLimit(4 << 10)
	idle := h.IdleReader(s.opts.ParkIdleReaders)
	var read func()
	read = func() {
		for idle.Wait() {
			if _, _, err := conn.NextReader(); err != nil {
				st.cancel()
				return
			}
		}
	}
	idle.OnResume(read, &s.parkedWS)
	go read()

	st.run() // until it has sent what there is; then it waits without a goroutine
}

// wsStream is a native WebSocket stream. It has a goroutine only while it
// writes: when it has sent everything there is, it asks the store to call
// resume at its hub's next change and its writer ends. A keep-alive timer
// pings the client when nothing was written for KeepAlive; the stream's
// context (the server's, bounded by the token's expiry) ends it.
type wsStream struct {
	s       *Server
	conn    *websocket.Conn
	reader  fsm.Filter
	remote  string
	release func() // the stream's place in the per-address count

	ctx    context.Context
	cancel context.CancelFunc // ends the stream (through ended)

	// Owned by the writer (one at a time: running).
	dl  writeDeadline
	buf []byte

	after     atomic.Uint64 // the cursor: every message up to it was sent
	lastWrite atomic.Int64  // unix nanoseconds of the last frame written

	mu        sync.Mutex
	keepAlive *time.Timer // pings the client (ping)
	running   bool        // a writer runs
	again     bool        // a change came while it ran: it reads once more
	waiting   func() bool // stops the armed wait for the hub's next change; nil when none
	finished  bool
}

// resume is called at a change of the stream's hub: it starts a writer, or
// tells the running one to read again.
func (st *wsStream) resume() {
	st.mu.Lock()
	st.waiting = nil // it fired
	if st.finished {
		st.mu.Unlock()
		return
	}
	if st.running {
		st.again = true
		st.mu.Unlock()
		return
	}
	st.running = true
	st.mu.Unlock()
	go st.run()
}

// run writes until the stream has sent everything, then returns; a change
// that came meanwhile makes it go round again.
func (st *wsStream) run() {
	for {
		if !st.send() {
			st.finish()
		}
		st.mu.Lock()
		if st.again && !st.finished {
			st.again = false
			st.mu.Unlock()
			continue
		}
		st.running = false
		st.mu.Unlock()
		return
	}
}

// arm asks for resume at the hub's next change, unless that is already
// asked. It is done before each read, so that no change between the read
// and the writer's return is missed.
func (st *wsStream) arm() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.waiting == nil && !st.finished {
		st.waiting = st.s.store.AfterHubChange(st.reader.Hub, st.resume)
	}
}

// send writes pages until there is nothing more to send; false when the
// stream must end (the client or the store failed).
func (st *wsStream) send() bool {
	after := st.after.Load()
	for {
		st.arm()
		page, err := st.s.store.Read(&st.reader, after, readBatch)
		if err != nil {
			if st.ctx.Err() == nil {
				st.s.opts.Logger.Warn("ws read", "hub", st.reader.Hub, "err", err)
				st.s.closeWS(st.conn, websocket.CloseInternalServerErr, "read failed")
			}
			return false
		}
		if len(page.Messages) == 0 && !page.Reset {
			if page.Next > after {
				// The page skipped messages that were not for this
				// reader: read on from there.
				after = page.Next
				st.after.Store(after)
				continue
			}
			return true
		}
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
		after = page.Next
		st.after.Store(after)
	}
}

// write sends one text frame.
func (st *wsStream) write(b []byte) bool {
	if !st.dl.check(st.conn.WriteMessage(websocket.TextMessage, b)) {
		if st.dl.expired {
			st.s.slowClientCut("stream_ws", st.remote, st.reader.Hub, st.after.Load())
		}
		return false
	}
	st.lastWrite.Store(time.Now().UnixNano())
	return true
}

// ping runs on the keep-alive timer: a ping when nothing was written for
// KeepAlive, then the timer again. (gorilla lets control frames be written
// beside the writer.)
func (st *wsStream) ping() {
	st.mu.Lock()
	timer := st.keepAlive
	st.mu.Unlock()
	if st.ctx.Err() != nil {
		return
	}
	period := st.s.opts.KeepAlive
	if quiet := time.Since(time.Unix(0, st.lastWrite.Load())); quiet < period {
		timer.Reset(period - quiet)
		return
	}
	if st.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(st.s.opts.WriteTimeout)) != nil {
		st.cancel()
		return
	}
	st.lastWrite.Store(time.Now().UnixNano())
	timer.Reset(period)
}

// ended runs when the stream's context ends: it tells the client why (the
// token expired, the node drains: resume after the cursor, or the stream
// ended) and ends the stream.
func (st *wsStream) ended() {
	st.mu.Lock()
	finished := st.finished
	st.mu.Unlock()
	if finished {
		return // it ended on its own (a failed write or read)
	}
	switch cause := context.Cause(st.ctx); {
	case errors.Is(cause, errTokenExpired):
		st.s.closeWS(st.conn, websocket.ClosePolicyViolation, errTokenExpired.Error())
	case errors.Is(cause, ErrDraining):
		st.s.closeWS(st.conn, websocket.CloseServiceRestart, "node draining; resume after "+strconv.FormatUint(st.after.Load(), 10))
	default:
		st.s.closeWS(st.conn, websocket.CloseGoingAway, "stream ended")
	}
	st.finish()
}

// finish ends the stream once: no more writers or pings, the socket
// closed (a running writer fails and returns), its counts returned.
func (st *wsStream) finish() {
	st.mu.Lock()
	if st.finished {
		st.mu.Unlock()
		return
	}
	st.finished = true
	waiting := st.waiting
	st.waiting = nil
	st.keepAlive.Stop()
	st.mu.Unlock()
	if waiting != nil {
		waiting()
	}
	st.cancel()
	_ = st.conn.Close()
	st.release()
	st.s.ws.Add(-1)
}

func (s *Server) closeWS(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

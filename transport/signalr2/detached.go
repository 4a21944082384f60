package signalr2

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// serveWebSocket serves the webSockets transport: the init envelope on
// connect, envelopes and hub responses as text frames, "{}" as the
// keep-alive; the client's frames are hub invocations.
//
// The handler returns once the socket is set up: a socket that has sent
// everything waits without a goroutine (see detachedStream), and its
// reader parks when the client is quiet. It takes over the request's
// cleanups, run when the socket ends.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn, m mode, after uint64, known map[string][]string, cl *netconn.Cleanups) {
	h := &netconn.Hijacker{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(h, r, nil)
	if err != nil {
		h.Abandon()
		return // the upgrader answered
	}
	ws.SetReadLimit(int64(s.opts.MaxMessageSize))
	st := s.detach(r, c, &wsWriter{ws: ws, timeout: s.opts.WriteTimeout}, &s.serving.ws, after, known, cl)
	// The reader runs the client's invocations; idle, it parks (no
	// goroutine) until the client sends or hangs up.
	idle := h.IdleReader(s.opts.ParkIdleReaders)
	var read func()
	read = func() {
		for idle.Wait() {
			typ, data, err := ws.ReadMessage()
			if err != nil {
				st.end(errClientGone)
				return
			}
			if typ != websocket.TextMessage {
				continue
			}
			if resp := st.invoke(data); resp != nil {
				if st.write(resp) != nil {
					st.end(errClientGone)
					return
				}
			}
		}
	}
	idle.OnResume(read, &s.parkedWS)
	go read()
	if m == modeConnect {
		env := envelope{Cursor: after, Init: true}
		if st.write(env.append(nil)) != nil {
			st.finish()
			return
		}
	}
	st.run()
}

// detach sets up the stream of c over a connection taken from net/http
// (r's): out writes to it, count counts it while it lives. The caller
// starts the connection's reader, writes what it must first, then calls
// run.
func (s *Server) detach(r *http.Request, c *conn, out streamOut, count *atomic.Int64, after uint64, known map[string][]string, cl *netconn.Cleanups) *detachedStream {
	c.req, c.kept = nil, keepRequest(r, s.keptHeaders(r.Header))
	count.Add(1)
	st := &detachedStream{s: s, c: c, out: out, count: count, known: known, after: after}
	st.cleanups = cl.Keep()
	watches := c.watches()
	st.pump = netconn.NewPump(func(wake func()) func() bool {
		return s.cluster.AfterChange(watches, wake)
	}, st.send, st.finish)
	st.endLive = s.live.begin(c, s.cluster.NodeID(), s.cluster.NodeID(), "")
	// The server's context ends the stream at shutdown (with Draining: the
	// client is told to reconnect elsewhere), the token's expiry ends it,
	// and so do the client's hang-up and a failed keep-alive ("{}" when
	// nothing was written for KeepAlive; out serialises it with the
	// writer's frames).
	st.life.Start(s.ctx, c.ident.Expires, errTokenExpired, s.keepAliveEvery(), st.out.keepAlive, errClientGone, st.end)
	return st
}

// run sends what there is; from here an end wakes a writer, which says
// goodbye (see send).
func (st *detachedStream) run() {
	st.mu.Lock()
	st.started = true
	st.mu.Unlock()
	st.pump.Run()
}

// Why a detached stream ends, besides the server's context.
var (
	errClientGone   = errors.New("client closed the connection")
	errTokenExpired = errors.New("the access token expired")
	errSocketEnded  = errors.New("stream ended")
)

// detachedStream is a SignalR 2 stream over a connection taken from
// net/http (a WebSocket, or an SSE response over HTTP/1.x) that follows
// its connection's cursor as stream does, without a goroutine while it
// waits: its pump runs send, which asks the store for a wake-up at the
// next change it watches (see conn.watches) before each read, and ends
// when there is nothing more to say. Its keep-alive writes "{}" on a
// timer; end (called back by the server's context, the token's timer, the
// reader when the client goes) ends it.
type detachedStream struct {
	s     *Server
	c     *conn
	out   streamOut
	count *atomic.Int64 // the open streams of its transport

	cleanups *netconn.Cleanups // the request's, taken over; run by finish
	endLive  func()            // ends the connection's liveness record

	mu sync.Mutex
	// cause is why the stream ends (nil while it runs); started, that the
	// handler is done writing (an end wakes a writer from then on);
	// cancelInvoke, the invocation the reader runs, if any.
	cause        error
	started      bool
	cancelInvoke context.CancelCauseFunc

	pump *netconn.Pump
	life netconn.Life // the keep-alives, the server's context, the token's expiry
	// Owned by the writer (the pump runs one at a time).
	after uint64
	known map[string][]string
}

// end ends the stream once, for cause: the invocation in progress is
// cancelled, and a writer says goodbye (a draining node tells the client
// to reconnect elsewhere) and finishes.
func (st *detachedStream) end(cause error) {
	st.mu.Lock()
	if st.cause != nil {
		st.mu.Unlock()
		return
	}
	st.cause = cause
	cancel, wake := st.cancelInvoke, st.started
	st.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
	if wake {
		st.pump.Wake()
	}
}

// ended is why the stream ends; nil while it runs.
func (st *detachedStream) ended() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cause
}

// invoke runs a frame's invocation with a context that ends with the
// stream (or the server); nil when there is nothing to answer.
func (st *detachedStream) invoke(data []byte) []byte {
	ctx, cancel := context.WithCancelCause(st.s.ctx)
	defer cancel(nil)
	st.mu.Lock()
	if st.cause != nil {
		st.mu.Unlock()
		return nil
	}
	st.cancelInvoke = cancel
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.cancelInvoke = nil
		st.mu.Unlock()
	}()
	return st.s.invokeFrame(ctx, st.c, data)
}

// write sends a frame and notes when.
func (st *detachedStream) write(b []byte) error {
	if err := st.out.write(b); err != nil {
		return err
	}
	st.life.Wrote()
	return nil
}

// send tells the client what there is to tell (as stream does: messages,
// a groups change, a closed record or a trimmed cursor); false when the
// stream must end.
func (st *detachedStream) send() bool {
	s, c := st.s, st.c
	bp := envelopeBuffers.Get()
	defer envelopeBuffers.Put(bp)
	for {
		if cause := st.ended(); cause != nil {
			// The end: a node that shuts down tells the client to
			// reconnect elsewhere, with its cursor.
			if s.opts.Draining != nil && errors.Is(cause, s.opts.Draining) {
				env := envelope{Cursor: st.after, Reconnect: true}
				_ = st.write(env.append(nil))
			}
			return false
		}
		st.pump.Arm()
		res, err := s.readOnce(c, st.after)
		if err == nil && res.moved && !res.gone {
			s.log.Debug("stream ends: the connection moved to another node", "conn", c.id)
			return false
		}
		if err == nil && len(res.msgs) == 0 && !res.gone && !res.reset && sameGroups(res.groups, st.known) {
			st.after = res.next
			return true // nothing to say: wait for a change
		}
		env, ok := s.answer(s.ctx, c, st.after, res, err, st.known)
		if !ok {
			return false
		}
		*bp = env.append((*bp)[:0])
		if st.write(*bp) != nil || env.Error != "" || env.Reconnect {
			return false
		}
		st.after = env.Cursor
		if env.Groups != "" {
			st.known = res.groups
		}
	}
}

// envelopeBuffers holds the buffers a detached stream's writer encodes its
// envelopes in (the stream's out copies what it writes), so that an idle
// stream keeps none.
var envelopeBuffers netconn.Buffers

// finish ends the stream once: no more writers or keep-alives, a
// goodbye (a WebSocket's close frame), the connection closed (a running
// writer fails and returns), the request's cleanups run.
func (st *detachedStream) finish() {
	if !st.pump.Finish() {
		return
	}
	st.life.Stop()
	st.end(errSocketEnded) // cancels an invocation in progress
	st.out.goodbye()
	_ = st.out.closeConn()
	st.endLive()
	st.cleanups.Run()
	st.count.Add(-1)
}

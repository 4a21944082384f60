package signalr2

import (
	"context"
	"errors"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// serveWebSocket serves the webSockets transport: the init envelope on
// connect, envelopes and hub responses as text frames, "{}" as the
// keep-alive; the client's frames are hub invocations.
//
// The handler returns once the socket is set up: a socket that has sent
// everything waits without a goroutine (the store starts a writer at the
// next change it watches, see wsStream), and its reader parks when
// the client is quiet. It takes over the request's cleanups, run when the
// socket ends.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn, m mode, after uint64, known map[string][]string, cl *cleanups) {
	h := &netconn.Hijacker{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(h, r, nil)
	if err != nil {
		h.Abandon()
		return // the upgrader answered
	}
	ws.SetReadLimit(int64(s.opts.MaxMessageSize))
	c.req = detached(r, s.keptHeaders(r.Header))
	s.serving.ws.Add(1)
	st := &wsStream{s: s, c: c, out: &wsWriter{ws: ws, timeout: s.opts.WriteTimeout}, known: known, after: after}
	st.cleanups = cl.keep()
	// The server's context ends the socket at shutdown (with Draining: the
	// client is told to reconnect elsewhere), the token's expiry ends it,
	// and so does the client's hang-up.
	serverCtx, cancel := context.WithCancelCause(s.ctx)
	st.ctx, st.cancelExpiry = serverCtx, func() {}
	if !c.ident.Expires.IsZero() { // one context less for a socket whose token does not expire
		st.ctx, st.cancelExpiry = s.clientContext(serverCtx, c)
	}
	st.cancel = cancel
	watches := c.watches()
	st.pump = netconn.NewPump(func(wake func()) func() bool {
		return s.cluster.AfterChange(watches, wake)
	}, st.send, st.finish)
	st.endLive = s.live.begin(c, s.cluster.NodeID(), s.cluster.NodeID(), "")
	// "{}" when nothing was written for KeepAlive (wsWriter serialises it
	// with the writer's frames).
	st.keepAlive = netconn.StartKeepAlive(s.keepAliveEvery(), func() error { return st.out.write([]byte("{}")) },
		func() { cancel(errors.New("client closed the socket")) })
	// The reader runs the client's invocations; idle, it parks (no
	// goroutine) until the client sends or hangs up.
	idle := h.IdleReader(s.opts.ParkIdleReaders)
	var read func()
	read = func() {
		for idle.Wait() {
			typ, data, err := ws.ReadMessage()
			if err != nil {
				cancel(errors.New("client closed the socket"))
				return
			}
			if typ != websocket.TextMessage {
				continue
			}
			if resp := s.invokeFrame(st.ctx, c, data); resp != nil {
				if st.write(resp) != nil {
					cancel(errors.New("client closed the socket"))
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
	context.AfterFunc(st.ctx, st.pump.Wake) // a writer says goodbye (see send)
	st.pump.Run()
}

// wsStream is a SignalR 2 WebSocket that follows its connection's cursor
// as stream does, without a goroutine while it waits: its pump runs send,
// which asks the store for a wake-up at the next change it watches (see
// conn.watches) before each read, and ends when there is nothing more to
// say. Its keep-alive writes "{}" on a timer; the context (the server's,
// bounded by the token's expiry, cancelled by the reader when the client
// goes) ends it.
type wsStream struct {
	s   *Server
	c   *conn
	out *wsWriter

	ctx          context.Context
	cancel       context.CancelCauseFunc
	cancelExpiry context.CancelFunc
	cleanups     *cleanups // the request's, taken over; run once, by finish
	endLive      func()    // ends the connection's liveness record

	pump      *netconn.Pump
	keepAlive *netconn.KeepAlive
	// Owned by the writer (the pump runs one at a time).
	after uint64
	known map[string][]string
}

// write sends a frame and notes when.
func (st *wsStream) write(b []byte) error {
	if err := st.out.write(b); err != nil {
		return err
	}
	st.keepAlive.Wrote()
	return nil
}

// send tells the client what there is to tell (as stream does: messages,
// a groups change, a closed record or a trimmed cursor); false when the
// socket must end.
func (st *wsStream) send() bool {
	s, c := st.s, st.c
	for {
		if st.ctx.Err() != nil {
			// The end: a node that shuts down tells the client to
			// reconnect elsewhere, with its cursor.
			if s.draining(st.ctx) {
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
		env, ok := s.answer(st.ctx, c, st.after, res, err, st.known)
		if !ok {
			return false
		}
		if st.write(env.append(nil)) != nil || env.Error != "" || env.Reconnect {
			return false
		}
		st.after = env.Cursor
		if env.Groups != "" {
			st.known = res.groups
		}
	}
}

// finish ends the socket once: no more writers or keep-alives, a close
// frame, the socket closed (a running writer fails and returns), the
// request's cleanups run.
func (st *wsStream) finish() {
	if !st.pump.Finish() {
		return
	}
	st.keepAlive.Stop()
	st.out.close()
	st.cancelExpiry()
	st.cancel(errors.New("socket ended"))
	_ = st.out.ws.Close()
	st.endLive()
	st.cleanups.run()
	st.s.serving.ws.Add(-1)
}

// cleanups are what a transport request undoes when it ends. A WebSocket
// outlives its handler: it takes them over and runs them when it ends.
type cleanups struct {
	fns  []func()
	kept bool
}

func (cl *cleanups) add(fn func()) { cl.fns = append(cl.fns, fn) }

// run runs them, the last added first.
func (cl *cleanups) run() {
	for i := len(cl.fns) - 1; i >= 0; i-- {
		cl.fns[i]()
	}
}

// done runs them at the end of the handler, unless a WebSocket took them
// over.
func (cl *cleanups) done() {
	if !cl.kept {
		cl.run()
	}
}

// keep takes them over: the returned cleanups are run by their new
// owner, once.
func (cl *cleanups) keep() *cleanups {
	cl.kept = true
	return cl
}

// detached is what a WebSocket keeps of its upgrade request for its life:
// what the Application (its query) and a re-authentication (header,
// query, address) read, without the request's context and the rest.
func detached(r *http.Request, header http.Header) *http.Request {
	return &http.Request{Method: r.Method, URL: r.URL, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Header: header, Host: r.Host, RemoteAddr: r.RemoteAddr, RequestURI: r.RequestURI, TLS: r.TLS}
}

// keptHeaders is what a WebSocket keeps of its upgrade request's header:
// none without Authenticate, the AuthHeaders present (nil when none is),
// or, without AuthHeaders, all of it. An upgrade request's header is most
// of what an idle socket would otherwise keep of its request.
func (s *Server) keptHeaders(h http.Header) http.Header {
	switch {
	case s.opts.Authenticate == nil:
		return nil
	case s.opts.AuthHeaders == nil:
		return h
	}
	var kept http.Header
	for _, name := range s.opts.AuthHeaders {
		if v, ok := h[http.CanonicalHeaderKey(name)]; ok {
			if kept == nil {
				kept = make(http.Header, len(s.opts.AuthHeaders))
			}
			kept[http.CanonicalHeaderKey(name)] = v
		}
	}
	return kept
}

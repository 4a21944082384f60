package signalr2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// frameWriter is a streaming transport: one envelope (or hub response) per
// write, and its keep-alive.
type frameWriter interface {
	write(b []byte) error
	keepAlive() error
}

// streamOut is a frameWriter over a connection taken from net/http (see
// detachedStream): it also says goodbye and closes the connection.
type streamOut interface {
	frameWriter
	goodbye()
	closeConn() error
}

// stream follows the connection's cursor on a stream held by this node:
// every batch of messages for it as one envelope, a keep-alive when idle,
// the groups token when its groups change. It ends when the client goes
// away, another node takes the connection (a reconnect elsewhere), the
// connection is closed ("E") or its cursor trimmed ("E"), or the node
// shuts down ("T":1).
func (s *Server) stream(ctx context.Context, c *conn, after uint64, known map[string][]string, out frameWriter) {
	defer s.live.begin(c, s.cluster.NodeID(), s.cluster.NodeID(), "")()
	ctx, cancel := s.clientContext(ctx, c)
	defer cancel()
	var buf []byte // the envelope being written; the writers copy it
	for {
		res, err := s.waitRead(ctx, c, after, known, s.keepAliveEvery(), true)
		if err == nil && res.moved && !res.gone {
			s.log.Debug("stream ends: the connection moved to another node", "conn", c.id)
			return
		}
		if errors.Is(err, errWaitDone) && len(res.msgs) == 0 && !res.gone && !res.reset && sameGroups(res.groups, known) {
			if out.keepAlive() != nil {
				return
			}
			after = res.next
			continue
		}
		env, ok := s.answer(ctx, c, after, res, err, known)
		if !ok {
			return
		}
		buf = env.append(buf[:0])
		if out.write(buf) != nil || env.Error != "" || env.Reconnect {
			return
		}
		after = env.Cursor
		if env.Groups != "" {
			known = res.groups
		}
	}
}

// serveSSE serves the serverSentEvents transport: "data: initialized",
// then one "data: <envelope>" event per envelope and "data: {}" as the
// keep-alive. Over HTTP/1.x the stream waits without a goroutine once
// set up (serveDetachedSSE; it takes over the request's cleanups); over
// HTTP/2 it is served here, on the request's goroutine.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, c *conn, m mode, after uint64, known map[string][]string, cl *netconn.Cleanups) {
	rc := http.NewResponseController(w)
	detach := netconn.WriteSSEHeader(w, r)
	out := &sseWriter{w: w, rc: rc, timeout: s.opts.WriteTimeout}
	if out.event([]byte("initialized")) != nil {
		return
	}
	if m == modeConnect {
		env := envelope{Cursor: after, Init: true}
		if out.write(env.append(nil)) != nil {
			return
		}
	}
	if detach && s.serveDetachedSSE(w, r, c, after, known, cl) {
		return
	}
	s.serving.sse.Add(1)
	defer s.serving.sse.Add(-1)
	s.stream(r.Context(), c, after, known, out)
}

// serveDetachedSSE takes the connection of an SSE response whose first
// events were flushed (close-delimited: see serveSSE) and follows the
// connection's cursor on it without a goroutine while it waits. It
// reports false when net/http would not give the connection up: the
// caller then serves the stream itself.
func (s *Server) serveDetachedSSE(w http.ResponseWriter, r *http.Request, c *conn, after uint64, known map[string][]string, cl *netconn.Cleanups) bool {
	nc, err := netconn.HijackStream(w)
	if err != nil {
		return false
	}
	st := s.detach(r, c, &rawSSEWriter{conn: nc, timeout: s.opts.WriteTimeout}, &s.serving.sse, after, known, cl)
	// The client sends nothing on this connection (its invocations come
	// as /send requests): its hang-up ends the stream.
	nc.WatchHangUp(s.opts.ParkIdleReaders, &s.parkedSSE, func() { st.end(errClientGone) })
	st.run()
	return true
}

type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (o *sseWriter) event(data []byte) error {
	_ = o.rc.SetWriteDeadline(time.Now().Add(o.timeout))
	if _, err := o.w.Write(appendSSEData(nil, data)); err != nil {
		return err
	}
	return o.rc.Flush()
}

// appendSSEData appends data as one SSE event.
func appendSSEData(dst, data []byte) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

func (o *sseWriter) write(b []byte) error { return o.event(b) }
func (o *sseWriter) keepAlive() error     { return o.event([]byte("{}")) }

// rawSSEWriter writes SSE events to a connection taken from net/http (a
// close-delimited response), one write each (mu: the writer and the
// keep-alive timer both write), framed in a pooled buffer: an idle stream
// keeps none.
type rawSSEWriter struct {
	mu      sync.Mutex
	conn    net.Conn
	timeout time.Duration
}

// eventBuffers holds the buffers SSE events are framed in while written.
var eventBuffers netconn.Buffers

func (o *rawSSEWriter) write(b []byte) error {
	bp := eventBuffers.Get()
	defer eventBuffers.Put(bp)
	*bp = appendSSEData((*bp)[:0], b)
	buf := *bp
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
	_, err := o.conn.Write(buf)
	return err
}

func (o *rawSSEWriter) keepAlive() error { return o.write([]byte("{}")) }
func (o *rawSSEWriter) goodbye()         {}
func (o *rawSSEWriter) closeConn() error { return o.conn.Close() }

type wsWriter struct {
	mu      sync.Mutex
	ws      *websocket.Conn
	timeout time.Duration
}

func (o *wsWriter) write(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.ws.SetWriteDeadline(time.Now().Add(o.timeout))
	return o.ws.WriteMessage(websocket.TextMessage, b)
}

func (o *wsWriter) keepAlive() error { return o.write([]byte("{}")) }

// goodbye sends the close frame.
func (o *wsWriter) goodbye() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

func (o *wsWriter) closeConn() error { return o.ws.Close() }

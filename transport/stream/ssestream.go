package stream

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// An SSE stream over HTTP/1.x holds no goroutine while it waits, as a
// WebSocket stream does: once its headers and first comment are out, the
// handler takes the connection from net/http (the response is
// close-delimited, so the events are written as they are, with no chunk
// framing) and returns. A pump writes whenever the hub has news, a timer
// sends the keep-alive comments, and a parked reader notices the client
// hanging up. Over HTTP/2, which cannot hand its connection over, the
// handler serves the stream on its own goroutine (serveSSE).

// serveDetachedSSE takes the connection of an SSE response whose headers
// and first comment were flushed (close-delimited: see netconn.WriteSSEHeader) and
// follows the hub from after without a goroutine while it waits. It
// reports false when net/http would not give the connection up: the
// caller then serves the stream itself.
func (s *Server) serveDetachedSSE(w http.ResponseWriter, r *http.Request, req streamRequest, grant access.Grant, after uint64) bool {
	conn, err := netconn.HijackStream(w)
	if err != nil {
		return false
	}
	st := &sseStream{detached: detached{s: s, reader: req.reader, remote: r.RemoteAddr, cleanups: keepSlot(r)}, conn: conn}
	st.dl = writeDeadline{timeout: s.opts.WriteTimeout, set: conn.SetWriteDeadline}
	st.after.Store(after)
	// A ping every KeepAlive, messages or not (as the request's goroutine
	// sends them in serveSSE): the writer does not note its writes.
	st.start(grant, st.send, st.finish, func() error {
		if !st.write([]byte(": ping\n\n"), 0) {
			return errStreamEnded
		}
		return nil
	}, st.end)

	// The client sends nothing after its request: its hang-up ends the
	// stream.
	conn.WatchHangUp(s.opts.ParkIdleReaders, &s.parkedSSE, func() { st.end(errStreamEnded) })

	st.pump.Run() // until it has sent what there is; then it waits without a goroutine
	return true
}

// sseStream is an SSE stream over a connection taken from net/http. It has
// a goroutine only while it writes (see wsStream, which it mirrors).
type sseStream struct {
	detached
	conn net.Conn

	// wmu serialises writes (the writer's events, keep-alives, the last
	// comment); closed: the last one was written, nothing follows it.
	wmu    sync.Mutex
	dl     writeDeadline
	closed bool

	buf []byte // owned by the writer (the pump runs one at a time)
	// The cursor (detached.after) is set under wmu with the write, so
	// that the draining event names it exactly.
}

// send writes pages until there is nothing more to send; false when the
// stream must end (the client or the store failed, or it is closing).
func (st *sseStream) send() bool {
	ok := st.sendPages(st)
	st.buf = idleBuffer(st.buf)
	return ok
}

func (st *sseStream) writePage(page *fsm.Page) bool {
	st.buf = appendSSEPage(st.buf[:0], page)
	return st.write(st.buf, page.Next)
}

func (st *sseStream) readFailed(err error) {
	st.s.opts.Logger.Warn("sse read", "hub", st.reader.Hub, "err", err)
}

// write writes b, unless the stream's last comment was written, and then
// records the cursor next (0: b carries no message); false when the
// stream must end.
func (st *sseStream) write(b []byte, next uint64) bool {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.closed {
		return false
	}
	st.dl.extend()
	_, err := st.conn.Write(b)
	if !st.dl.check(err) {
		if st.dl.expired {
			st.s.slowClientCut("stream_sse", st.remote, st.reader.Hub, st.after.Load())
		}
		return false
	}
	if next > 0 {
		st.after.Store(next)
	}
	return true
}

// end ends the stream once, telling the client why when there is
// something to say (the token expired; the node drains: resume after the
// cursor), as the last thing written.
func (st *sseStream) end(cause error) {
	if st.ending.Swap(true) {
		return
	}
	st.wmu.Lock()
	if !st.closed {
		st.closed = true
		var last []byte
		switch {
		case errors.Is(cause, errTokenExpired):
			last = []byte(": access token expired\n\n")
		case errors.Is(cause, ErrDraining):
			last = appendDrainingSSE(nil, st.after.Load())
		}
		if last != nil {
			st.dl.extend()
			_, _ = st.conn.Write(last)
		}
	}
	st.wmu.Unlock()
	st.finish()
}

// finish ends the stream once (see detached.finish).
func (st *sseStream) finish() { st.detached.finish(st.conn, &st.s.sse) }

// appendSSEPage appends a page's events: a reset event first when the
// cursor was older than the history, then each message with its index as
// the event id.
func appendSSEPage(b []byte, page *fsm.Page) []byte {
	if page.Reset {
		b = append(b, "event: reset\ndata: "...)
		b = appendResetJSON(b, page.Oldest)
		b = append(b, "\n\n"...)
	}
	for i := range page.Messages {
		m := &page.Messages[i]
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, m.Index, 10)
		b = append(b, "\ndata: "...)
		b = appendMessageJSON(b, m)
		b = append(b, "\n\n"...)
	}
	return b
}

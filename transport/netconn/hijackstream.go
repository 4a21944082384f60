package netconn

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// StreamConn is the connection of a streamed response taken from
// net/http (an SSE response over HTTP/1.x, close-delimited): the handler
// returns, and the stream writes to it on demand. Its client only reads;
// WatchHangUp notices when it goes.
type StreamConn struct {
	net.Conn
	h *Hijacker
}

// HijackStream takes the connection of a response whose headers (and
// first bytes) were flushed. net/http's deadlines, which stay on the
// connection it gives up, are cleared: the stream sets its own. It fails
// where net/http cannot give the connection up (HTTP/2).
func HijackStream(w http.ResponseWriter) (*StreamConn, error) {
	h := &Hijacker{ResponseWriter: w}
	c, _, err := h.Hijack()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return &StreamConn{Conn: c, h: h}, nil
}

// WatchHangUp starts the stream's reader, once the stream is set up: it
// waits for the client without a goroutine (parked after parkAfter without
// a byte, counted in parked while parked; see IdleReader), drops whatever
// the client sends, and calls hangUp once when it hangs up.
func (c *StreamConn) WatchHangUp(parkAfter time.Duration, parked *atomic.Int64, hangUp func()) {
	idle := c.h.IdleReader(parkAfter)
	var read func()
	read = func() {
		var discard [64]byte
		for idle.Wait() {
			if _, err := idle.Read(discard[:]); err != nil {
				hangUp()
				return
			}
		}
	}
	idle.OnResume(read, parked)
	go read()
}

// WriteSSEHeader sends the 200 of a Server-Sent Events response with the
// headers every SSE endpoint sets (no caching, no proxy buffering) and
// reports whether the stream can be detached (HijackStream): over
// HTTP/1.x the response is close-delimited — no chunking, the connection
// closes at the end, as the SSE recommendation suggests — so its events
// can be written straight to the connection taken from net/http. Over
// HTTP/2 it is framed as usual and served on the request's goroutine.
// Headers the caller set before are kept.
func WriteSSEHeader(w http.ResponseWriter, r *http.Request) (detach bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Accel-Buffering", "no")
	detach = r.ProtoMajor == 1
	if detach {
		h.Set("Transfer-Encoding", "identity")
	}
	w.WriteHeader(http.StatusOK)
	return detach
}

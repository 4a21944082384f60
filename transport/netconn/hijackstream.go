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

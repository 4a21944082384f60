package signalr

import (
	"bytes"
	"net/http"
	"time"

	"github.com/backplane/backplane/transport/netconn"
)

// serveSSE runs the server-to-client half of a connection as Server-Sent
// Events; the client sends with POST. The end of this request ends the
// connection.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, c *conn) {
	if !c.attachOrRefuse(w, transportSSE) {
		return
	}
	defer c.end("", true, "sse request ended")
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Encoding", "identity")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	netconn.LimitRequestSendBuffer(r, netconn.SendBuffer)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteDeadline))
		_, err := w.Write(b)
		if err == nil {
			err = rc.Flush()
		}
		if isTimeout(err) {
			s.slowClientCut(c, transportSSE)
		}
		return err == nil
	}
	// A comment at once: the client's connect waits for the stream to open.
	if !write([]byte(":\r\n")) {
		return
	}
	c.startReceiving() // what the client posted before the stream opened
	// A Ping once KeepAlive has passed since the last write, to the
	// moment: the timer is set for then, and moved on when a write came
	// meanwhile.
	lastWrite := time.Now()
	keepAlive := time.NewTimer(s.opts.KeepAlive)
	defer keepAlive.Stop()
	var recs, event []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.out.ready:
			recs = c.drain(recs[:0], maxFrameBytes)
			if len(recs) == 0 {
				continue
			}
			event = appendSSEEvent(event[:0], recs)
			lastWrite = time.Now()
			if !write(event) {
				return
			}
		case <-keepAlive.C:
			if wait := s.opts.KeepAlive - time.Since(lastWrite); wait > 0 {
				keepAlive.Reset(wait)
				continue
			}
			keepAlive.Reset(s.opts.KeepAlive)
			if p := c.protocolOf(); p != nil {
				lastWrite = time.Now()
				if !write(appendSSEEvent(event[:0], p.PingRecord())) {
					return
				}
			}
		case <-c.done:
			recs = c.drain(recs[:0], 1<<30)
			if final := c.takeFinal(); final != nil {
				recs = append(recs, final...)
			}
			if len(recs) > 0 {
				write(appendSSEEvent(event[:0], recs))
			}
			return
		}
	}
}

// appendSSEEvent frames payload as one event, a "data: " line per line.
func appendSSEEvent(dst, payload []byte) []byte {
	for {
		line, rest, more := bytes.Cut(payload, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, "\r\n"...)
		if !more {
			break
		}
		payload = rest
	}
	return append(dst, "\r\n"...)
}

package signalr

import (
	"bytes"
	"net/http"
	"time"

	"github.com/backplane/backplane/transport/netconn"
)

// serveSSE runs the server-to-client half of a connection as Server-Sent
// Events; the client sends with POST. The end of this stream ends the
// connection. Over HTTP/1.x the stream holds no goroutine once its
// headers are out (detachSSE): it is a socket like a WebSocket's, whose
// frames are SSE events; over HTTP/2 it is served here, on the request's
// goroutine.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, c *conn) {
	if !c.attachOrRefuse(w, transportSSE) {
		return
	}
	rc := http.NewResponseController(w)
	// As ASP.NET Core sends them, beside the common SSE headers.
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Content-Encoding", "identity")
	detach := netconn.WriteSSEHeader(w, r)
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
		c.end("", true, "sse request ended")
		return
	}
	if detach && s.detachSSE(w, c) {
		return
	}
	defer c.end("", true, "sse request ended")
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

// detachSSE takes the connection of an SSE response whose headers and
// first comment were flushed (close-delimited: see serveSSE) and attaches
// it to c as a socket whose frames are SSE events: its writer runs only
// while records are queued, a timer queues its keep-alive Pings, and its
// reader parks until the client hangs up, which ends the connection. It reports false when net/http would not give the
// connection up: the caller then serves the stream itself.
func (s *Server) detachSSE(w http.ResponseWriter, c *conn) bool {
	nc, err := netconn.HijackStream(w)
	if err != nil {
		return false
	}
	frames := &sseFrames{conn: nc}
	// A Ping once KeepAlive has passed since the last write, to the moment
	// (as ASP.NET does; the reaper's sweep, which pings idle WebSockets,
	// may be a third of KeepAlive late): a timer, no goroutine. Before the
	// handshake there is no protocol to ping with. Started before the
	// socket is attached, so that the socket's close always stops it.
	frames.keepAlive.Store(netconn.StartKeepAlive(s.opts.KeepAlive, func() error {
		if p := c.protocolOf(); p != nil {
			if claimed := c.queuePing(p.PingRecord()); claimed != nil {
				claimed.runWriter(false) // the socket's writer, idle until now
			}
		}
		return nil
	}, func() {}))
	sock := c.attachFrames(frames, nil)
	sock.wake() // records queued before the socket was attached
	// The client sends nothing on this connection (its messages come as
	// POSTs): its hang-up ends the connection.
	nc.WatchHangUp(s.opts.ParkIdleReaders, &s.parkedSSE, func() {
		c.end("", true, "sse request ended")
		sock.wake() // the writer sends what is left and closes
	})
	c.startReceiving() // what the client posted before the stream opened
	return true
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

package signalr

import (
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/hubproto"
)

// maxFrameBytes bounds how many queued records one write coalesces.
const maxFrameBytes = 64 << 10

// serveWebSocket runs a connection over WebSocket. c is nil for a client
// that skipped negotiation: the connection is made on the spot.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn) {
	if !s.originAllowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if c == nil {
		id, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		c = s.newConn(r.PathValue("hub"), id)
		s.addPending(c)
	}
	if err := c.attach(transportWebSockets); err != nil {
		status := http.StatusBadRequest
		if err == errConcurrent {
			status = http.StatusConflict
		}
		http.Error(w, err.Error(), status)
		return
	}
	up := websocket.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 16 << 10,
		CheckOrigin: func(*http.Request) bool { return true }, // checked above
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		c.end("", false, "websocket upgrade failed")
		return
	}
	ws.SetReadLimit(int64(4*s.opts.MaxMessageSize + 1024))
	go func() {
		defer c.end("", true, "websocket closed")
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			c.receive(data)
		}
	}()
	s.writeWebSocket(ws, c)
}

// writeWebSocket writes queued records, several per frame, until the
// connection ends; it pings when nothing was written for KeepAlive.
func (s *Server) writeWebSocket(ws *websocket.Conn, c *conn) {
	defer ws.Close()
	tick := time.NewTicker(s.opts.KeepAlive / 3)
	defer tick.Stop()
	lastWrite := time.Now()
	var buf []byte
	write := func(b []byte) bool {
		kind := websocket.TextMessage
		if p := c.protocolOf(); p != nil && p.TransferFormat() == hubproto.TransferFormatBinary {
			kind = websocket.BinaryMessage
		}
		_ = ws.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		lastWrite = time.Now()
		return ws.WriteMessage(kind, b) == nil
	}
	for {
		select {
		case rec := <-c.out:
			buf = c.drain(append(buf[:0], rec...), maxFrameBytes)
			if !write(buf) {
				c.end("", true, "websocket write failed")
				return
			}
		case <-tick.C:
			if p := c.protocolOf(); p != nil && time.Since(lastWrite) >= s.opts.KeepAlive {
				if !write(p.PingRecord()) {
					c.end("", true, "websocket write failed")
					return
				}
			}
		case <-c.done:
			buf = c.drain(buf[:0], 1<<30)
			if final := c.takeFinal(); final != nil {
				buf = append(buf, final...)
			}
			if len(buf) > 0 {
				write(buf)
			}
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		}
	}
}

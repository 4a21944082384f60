package stream

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

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
	defer conn.Close()
	_ = netconn.LimitSendBuffer(conn.NetConn(), netconn.SendBuffer)
	s.ws.Add(1)
	defer s.ws.Add(-1)

	ctx, cancel := untilExpiry(r.Context(), grant)
	defer cancel()
	// The reader handles control frames and notices the close; idle, it
	// parks (no goroutine) until the client sends or hangs up.
	conn.SetReadLimit(4 << 10)
	idle := h.IdleReader(s.opts.ParkIdleReaders)
	var read func()
	read = func() {
		for idle.Wait() {
			if _, _, err := conn.NextReader(); err != nil {
				cancel()
				return
			}
		}
	}
	idle.OnResume(read, &s.parkedWS)
	go read()

	after := req.after
	if req.fromNow {
		after = s.store.LastMessage()
	}
	var buf []byte
	ka := &keepAlive{parent: ctx, period: s.opts.KeepAlive}
	defer ka.stop()
	dl := &writeDeadline{timeout: s.opts.WriteTimeout, set: conn.SetWriteDeadline}
	defer func() {
		if dl.expired {
			s.slowClientCut("stream_ws", r, req.reader.Hub, after)
		}
	}()
	for {
		page, err := s.store.WaitRead(ka.wait(), &req.reader, after, readBatch)
		switch {
		case ctx.Err() != nil:
			switch cause := context.Cause(ctx); {
			case errors.Is(cause, errTokenExpired):
				s.closeWS(conn, websocket.ClosePolicyViolation, errTokenExpired.Error())
			case errors.Is(cause, ErrDraining):
				s.closeWS(conn, websocket.CloseServiceRestart, "node draining; resume after "+strconv.FormatUint(after, 10))
			default:
				s.closeWS(conn, websocket.CloseGoingAway, "stream ended")
			}
			return
		case errors.Is(err, context.DeadlineExceeded):
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.opts.WriteTimeout)) != nil {
				return
			}
			continue
		case err != nil:
			s.opts.Logger.Warn("ws read", "hub", req.reader.Hub, "err", err)
			s.closeWS(conn, websocket.CloseInternalServerErr, "read failed")
			return
		}
		dl.extend()
		if page.Reset {
			if !dl.check(conn.WriteMessage(websocket.TextMessage, appendResetJSON(buf[:0], page.Oldest))) {
				return
			}
		}
		for i := range page.Messages {
			buf = appendMessageJSON(buf[:0], &page.Messages[i])
			if !dl.check(conn.WriteMessage(websocket.TextMessage, buf)) {
				return
			}
			after = page.Messages[i].Index
		}
		after = page.Next
	}
}

func (s *Server) closeWS(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

package signalr

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// frameConn is what a socket writes its frames of records to: a
// WebSocket (one message per frame), or an SSE response whose connection
// the handler took from net/http (one event per frame).
type frameConn interface {
	writeFrame(b []byte, binary bool) error
	setWriteDeadline(t time.Time) error
	goodbye() // a WebSocket's Close message; nothing for SSE
	close() error
}

// wsFrames writes frames as WebSocket messages.
type wsFrames struct{ ws *websocket.Conn }

func (f wsFrames) writeFrame(b []byte, binary bool) error {
	kind := websocket.TextMessage
	if binary {
		kind = websocket.BinaryMessage
	}
	return f.ws.WriteMessage(kind, b)
}

func (f wsFrames) setWriteDeadline(t time.Time) error { return f.ws.SetWriteDeadline(t) }

func (f wsFrames) goodbye() {
	_ = f.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

func (f wsFrames) close() error { return f.ws.Close() }

// sseFrames writes frames as SSE events to a close-delimited response's
// connection, framed in a buffer of frameBuffers (an idle stream keeps
// none). Only the socket's writer writes (one at a time); keepAlive, set
// before the socket is attached, is told of each write and stopped at the
// close.
type sseFrames struct {
	conn      net.Conn
	keepAlive atomic.Pointer[netconn.KeepAlive]
}

func (f *sseFrames) writeFrame(b []byte, _ bool) error {
	bp := frameBuffers.Get()
	defer frameBuffers.Put(bp)
	*bp = appendSSEEvent((*bp)[:0], b)
	_, err := f.conn.Write(*bp)
	if k := f.keepAlive.Load(); k != nil && err == nil {
		k.Wrote()
	}
	return err
}

func (f *sseFrames) setWriteDeadline(t time.Time) error { return f.conn.SetWriteDeadline(t) }
func (f *sseFrames) goodbye()                           {}

func (f *sseFrames) close() error {
	if k := f.keepAlive.Load(); k != nil {
		k.Stop()
	}
	return f.conn.Close()
}

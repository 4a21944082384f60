package netconn

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// upgrader keeps an idle WebSocket small: the read buffer is the
// Hijacker's (ReadBufferSize 0), and write buffers come from a pool, held
// only while a frame is written. It accepts every origin: the handlers
// check the origin before they upgrade.
var upgrader = websocket.Upgrader{
	WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true },
}

// UpgradeWebSocket upgrades the request to a WebSocket through a Hijacker,
// bounds its send buffer (SendBuffer), and returns it with its IdleReader,
// which parks after parkAfter without a byte (0 or less: never). On error
// the upgrader has answered the request.
func UpgradeWebSocket(w http.ResponseWriter, r *http.Request, parkAfter time.Duration) (*websocket.Conn, *IdleReader, error) {
	h := &Hijacker{ResponseWriter: w}
	ws, err := upgrader.Upgrade(h, r, nil)
	if err != nil {
		h.Abandon()
		return nil, nil, err
	}
	_ = LimitSendBuffer(ws.NetConn(), SendBuffer)
	return ws, h.IdleReader(parkAfter), nil
}

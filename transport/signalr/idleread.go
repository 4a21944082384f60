package signalr

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/netconn"
)

// upgrader keeps an idle connection small: the read buffer is the
// hijacked one (ReadBufferSize 0: see netconn.Hijacker), and write buffers
// are shared through a pool (held only while a frame is written).
var upgrader = websocket.Upgrader{
	WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true }, // checked by the caller
}

// upgradeSocket upgrades the request to a WebSocket whose reader waits
// outside gorilla while idle and parks after parkAfter without a byte
// (0 or less: never; see netconn.IdleReader).
func upgradeSocket(w http.ResponseWriter, r *http.Request, parkAfter time.Duration) (*websocket.Conn, *netconn.IdleReader, error) {
	h := &netconn.Hijacker{ResponseWriter: w}
	ws, err := upgrader.Upgrade(h, r, nil)
	if err != nil {
		h.Abandon()
		return nil, nil, err
	}
	_ = netconn.LimitSendBuffer(ws.NetConn(), netconn.SendBuffer)
	return ws, h.IdleReader(parkAfter), nil
}

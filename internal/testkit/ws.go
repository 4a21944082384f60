package testkit

import (
	"net/http"
	"testing"

	"github.com/gorilla/websocket"
)

// DialWS opens a WebSocket to u with d (websocket.DefaultDialer when d is
// nil) and the request header h, or fails the test, naming what and the
// status of the answer (0 when there was none). The connection is closed
// when the test ends.
func DialWS(t testing.TB, d *websocket.Dialer, u string, h http.Header, what string) *websocket.Conn {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	conn, resp, err := d.Dial(u, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", what, err, status)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

package testkit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/testkit"
)

func TestDialWS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.WriteMessage(websocket.TextMessage, []byte(r.Header.Get("X-Test")))
	}))
	defer srv.Close()
	conn := testkit.DialWS(t, nil, "ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{"X-Test": {"sent"}}, "the echo server")
	if _, data, err := conn.ReadMessage(); err != nil || string(data) != "sent" {
		t.Fatalf("first frame: got %q, %v, want the request's X-Test header", data, err)
	}
}

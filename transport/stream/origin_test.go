package stream

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/gorilla/websocket"
)

// -allowed-origins applies to the native streams: an allowed origin gets
// CORS for the poll and SSE and may open a native WebSocket; any other
// browser origin is refused; the node's own host and clients without an
// Origin always pass.
func TestNativeStreamsFollowAllowedOrigins(t *testing.T) {
	f, err := fsm.New(fsm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	mux := http.NewServeMux()
	NewServer(f, Options{AllowedOrigins: []string{"https://app.example"}}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		origin   string
		status   int
		corsEcho bool
	}{
		{"", http.StatusOK, false},
		{"http://" + host, http.StatusOK, true},
		{"https://app.example", http.StatusOK, true},
		{"https://evil.example", http.StatusForbidden, false},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/hubs/chat/poll?after=0&timeout=0", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		acao := resp.Header.Get("Access-Control-Allow-Origin")
		if resp.StatusCode != tc.status || (acao == tc.origin) != tc.corsEcho && tc.origin != "" {
			t.Fatalf("poll with Origin %q: status %d, Access-Control-Allow-Origin %q; want %d, echoed=%v", tc.origin, resp.StatusCode, acao, tc.status, tc.corsEcho)
		}
		if tc.origin == "" && acao != "" {
			t.Fatalf("poll without Origin: Access-Control-Allow-Origin %q, want none", acao)
		}
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws := "ws://" + host + "/v1/hubs/chat/ws?after=0"
	conn, _, err := d.Dial(ws, http.Header{"Origin": {"https://app.example"}})
	if err != nil {
		t.Fatalf("native WebSocket from an allowed origin: %v", err)
	}
	conn.Close()
	if _, resp, err := d.Dial(ws, http.Header{"Origin": {"https://evil.example"}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("native WebSocket from another origin: err %v, want 403", err)
	}
}

package signalr

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
)

// A WebSocket client that stops reading is cut within its write deadline
// of the socket filling up, with the default outbound queue and the
// kernel's default buffers (the server bounds its send buffer itself),
// and the cut is counted.
func TestStalledWebSocketIsCutAndCounted(t *testing.T) {
	t.Parallel()
	const writeDeadline = time.Second
	cluster := newFakeCluster(t, "a")
	ts := startServer(t, cluster, testOptions(func(o *Options) { o.WriteDeadline = writeDeadline }), nil)
	n := ts.negotiate("chat", "")
	dialer := smallReceiveBufferDialer()
	stalled, _, err := dialer.Dial("ws"+strings.TrimPrefix(ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken)), "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stalled.Close() })
	if err := stalled.WriteMessage(websocket.TextMessage, []byte(handshakeJSON)); err != nil {
		t.Fatal(err)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, _, err := stalled.ReadMessage(); err != nil {
		t.Fatalf("handshake reply: %v", err)
	}
	// From here on the client reads nothing.
	payload := strings.Repeat("p", 1024)
	start := time.Now()
	for i := 0; ts.srv.SlowClientsCut() == 0; i++ {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("a client that stopped reading was not cut after %d messages in 20 s (write deadline %s)", i, writeDeadline)
		}
		args, _ := json.Marshal([]any{i, payload})
		cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "seq", Arguments: args})
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("a stalled WebSocket client was cut %s after it stopped reading (write deadline %s)", time.Since(start).Round(10*time.Millisecond), writeDeadline)
	waitFor(t, "the cut connection to be gone", func() (bool, string) {
		return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
	})
	if got := ts.srv.SlowClientsCut(); got != 1 {
		t.Fatalf("slow clients cut: %d, want 1", got)
	}
}

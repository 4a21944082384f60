package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A node counts an address's native streams and SignalR connections
// against one -max-connections-per-address budget.
func TestConnectionsPerAddressShareOneBudget(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, tweak: func(cfg *Config) { cfg.MaxConnectionsPerAddress = 2 }})
	base := "http://" + c.nodes[0].HTTPAddr()
	client := &http.Client{Timeout: 10 * time.Second}
	stream, err := client.Get(base + "/v1/hubs/chat/stream")
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("native stream: got %v %v, want 200", stream, err)
	}
	negotiate := func() (int, string) {
		resp, err := client.Post(base+"/hubs/chat/negotiate?negotiateVersion=1", "text/plain", nil)
		if err != nil {
			t.Fatalf("negotiate: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := negotiate(); code != http.StatusOK {
		t.Fatalf("negotiate with one stream open: got %d %s, want 200", code, body)
	}
	if code, body := negotiate(); code != http.StatusTooManyRequests || !strings.Contains(body, "at most 2 concurrent connections per address") {
		t.Fatalf("negotiate past the shared limit: got %d %q, want 429 naming the limit", code, body)
	}
	stream.Body.Close()
	waitFor(t, 5*time.Second, "the closed stream to free its slot", func() (bool, string) {
		code, body := negotiate()
		return code == http.StatusOK, body
	})
}

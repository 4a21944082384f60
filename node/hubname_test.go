package node

import (
	"net/http"
	"strings"
	"testing"
)

func TestFoldHubSegment(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/hubs/Chat", "/hubs/chat"},
		{"/hubs/CHAT/negotiate", "/hubs/chat/negotiate"},
		{"/api/v1/hubs/Chat/groups/G/connections/C", "/api/v1/hubs/chat/groups/G/connections/C"},
		{"/api/hubs/Chat/:send", "/api/hubs/chat/:send"},
		{"/v1/hubs/Chat_2/poll", "/v1/hubs/chat_2/poll"},
		{"/hubs/chat", "/hubs/chat"},
		{"/admin/Status", "/admin/Status"},
	} {
		got, changed := foldHubSegment(tc.in)
		if got != tc.want || changed != (tc.in != tc.want) {
			t.Errorf("foldHubSegment(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.in != tc.want)
		}
	}
}

// Hub names are case-insensitive everywhere: a SignalR client on
// /hubs/Chat and one on /hubs/CHAT are on one hub, with REST sends to
// /api/v1/hubs/chat, relay sends from either, and the native stream on
// /v1/hubs/cHaT; the log records the lower-case name.
func TestHubNamesAreCaseInsensitive(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	a := dialHub(t, n, "Chat", "")
	b := dialHub(t, n, "CHAT", "")
	n.publish(t, "chat", "fromRest", `["r"]`, nil)
	for name, cl := range map[string]*hubClient{"Chat": a, "CHAT": b} {
		if rec := cl.next(); rec["target"] != "fromRest" {
			t.Fatalf("client on /hubs/%s: got %v, want the REST send to hub chat", name, rec)
		}
	}
	if e := b.invoke("1", "SendToAll", "fromB", "x"); e != "" {
		t.Fatalf("SendToAll on /hubs/CHAT: %s", e)
	}
	if rec := a.next(); rec["target"] != "fromB" {
		t.Fatalf("client on /hubs/Chat: got %v, want the relay send from /hubs/CHAT", rec)
	}
	n.publish(t, "ChAt", "fromRest2", `[]`, nil)
	if rec := a.next(); rec["target"] != "fromRest2" {
		t.Fatalf("client on /hubs/Chat: got %v, want the REST send to /api/v1/hubs/ChAt", rec)
	}
	got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/cHaT/poll?after=0&timeout=0"), nil, nil)
	if got.status != http.StatusOK || !strings.Contains(string(got.body), "fromRest") || !strings.Contains(string(got.body), "fromB") {
		t.Fatalf("native poll on /v1/hubs/cHaT: got %d %s, want both sends", got.status, got.body)
	}
	page, err := n.fsm.ReadAll(0, 10)
	if err != nil || len(page.Messages) != 3 {
		t.Fatalf("the log: got %v, %v, want 3 messages", page.Messages, err)
	}
	for _, m := range page.Messages {
		if m.Hub != "chat" {
			t.Fatalf("a message's hub: got %q, want the canonical %q", m.Hub, "chat")
		}
	}
}

// A REST token's audience names the URL the client called, in the case
// it called it.
func TestRESTAudienceKeepsTheClientsCase(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	path := "/api/v1/hubs/Chat"
	if res := doHTTP(t, http.MethodPost, n.url(path), []byte(`{"target":"t","arguments":[]}`), restToken(t, n, path)); res.status != http.StatusAccepted {
		t.Fatalf("send with a token for %s: got %d %s, want 202", path, res.status, res.body)
	}
}

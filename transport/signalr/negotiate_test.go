package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestNegotiateV1(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, query := range []string{"negotiateVersion=1", "negotiateVersion=1&useStatefulReconnect=true", "tenant=a&negotiateVersion=7"} {
		resp, body := ts.negotiateRaw("chat", query)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("negotiate ?%s: got %d %q, want 200 application/json", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		n := decodeNegotiation(t, body)
		if n.ConnectionID == "" || n.ConnectionToken == "" || n.NegotiateVersion == nil || *n.NegotiateVersion != 1 {
			t.Fatalf("negotiate ?%s: got %s, want connectionId, connectionToken and negotiateVersion 1", query, body)
		}
		// Offered only when asked: the JS client fails a negotiation that
		// offers it unasked.
		asked := strings.Contains(query, "useStatefulReconnect=true")
		if got := string(n.raw["useStatefulReconnect"]); (got == "true") != asked || (!asked && got != "") {
			t.Fatalf("negotiate ?%s: got %s, want useStatefulReconnect only when asked", query, body)
		}
		if _, ok := n.raw["ProtocolVersion"]; ok {
			t.Fatalf("negotiate ?%s: got %s, want no ProtocolVersion", query, body)
		}
		var got []string
		for _, tr := range n.AvailableTransports {
			got = append(got, tr.Transport+":"+strings.Join(tr.TransferFormats, "+"))
		}
		want := "WebSockets:Text+Binary ServerSentEvents:Text LongPolling:Text+Binary"
		mustEqual(t, "negotiate ?"+query+" transports", strings.Join(got, " "), want)
	}
}

func TestNegotiateIDsAreUniqueAndLong(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	seen := map[string]bool{}
	for range 20 {
		n := ts.negotiate("chat", "")
		for _, v := range []string{n.ConnectionID, n.ConnectionToken} {
			if len(v) < 22 {
				t.Fatalf("negotiate: got id or token %q of %d characters, want at least 22", v, len(v))
			}
			if seen[v] {
				t.Fatalf("negotiate: got %q twice, want every id and token distinct", v)
			}
			seen[v] = true
		}
	}
}

func TestNegotiateV0UsesIDAsToken(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, query := range []string{"negotiateVersion=0", ""} {
		resp, body := ts.negotiateRaw("chat", query)
		mustEqual(t, "negotiate ?"+query+" status", resp.StatusCode, http.StatusOK)
		n := decodeNegotiation(t, body)
		if n.ConnectionToken != "" || n.ConnectionID == "" {
			t.Fatalf("negotiate ?%s: got %s, want a connectionId and no connectionToken", query, body)
		}
		if n.NegotiateVersion != nil && *n.NegotiateVersion != 0 {
			t.Fatalf("negotiate ?%s: got negotiateVersion %d, want 0 or none", query, *n.NegotiateVersion)
		}
		// The id works as the token.
		c, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionID), nil)
		if err != nil {
			t.Fatalf("upgrade with the v0 id: got error %v (status %v), want a WebSocket", err, statusOf(resp))
		}
		c.handshake()
		got := c.invoke("1", "SendToAll", "ping", 1)
		if got.Error != "" || len(got.Result) == 0 {
			t.Fatalf("invoke over v0: got %s, want a result", got.raw)
		}
	}
}

func TestNegotiateBadVersionAnswersError(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, v := range []string{"abc", "1.5", "-1"} {
		resp, body := ts.negotiateRaw("chat", "negotiateVersion="+v)
		mustEqual(t, "negotiate version "+v+" status", resp.StatusCode, http.StatusOK)
		n := decodeNegotiation(t, body)
		if n.Error == "" || n.ConnectionID != "" {
			t.Fatalf("negotiate version %q: got %s, want {\"error\":...} and no connection", v, body)
		}
	}
}

func TestNegotiateMethodAndHub(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		mustEqual(t, m+" /negotiate status", ts.status(m, ts.url+"/hubs/chat/negotiate?negotiateVersion=1", nil, nil), http.StatusMethodNotAllowed)
	}
	for _, hub := range []string{"1chat", "c.hat", "-chat", strings.Repeat("h", 129)} {
		resp, body := ts.negotiateRaw(hub, "negotiateVersion=1")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("negotiate on hub %q: got %d (%s), want 404", hub, resp.StatusCode, body)
		}
	}
	// '-' after the first letter is fine, as ASP.NET routes /hubs/chat-room.
	if resp, body := ts.negotiateRaw("chat-room", "negotiateVersion=1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("negotiate on hub chat-room: got %d (%s), want 200", resp.StatusCode, body)
	}
}

func TestHubStatusCodes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	sse := http.Header{"Accept": {"text/event-stream"}}
	t.Run("missing id", func(t *testing.T) {
		for _, tc := range []struct {
			method string
			hdr    http.Header
		}{{http.MethodPost, nil}, {http.MethodGet, sse}, {http.MethodGet, nil}, {http.MethodDelete, nil}} {
			mustEqual(t, tc.method+" without id", ts.status(tc.method, ts.hubURL("chat", ""), []byte("x"), tc.hdr), http.StatusBadRequest)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		for _, token := range []string{"nosuchtoken", "nosuchtoken~a", "nosuchtoken~elsewhere"} {
			u := ts.hubURL("chat", "id="+url.QueryEscape(token))
			mustEqual(t, "poll of "+token, ts.status(http.MethodGet, u, nil, nil), http.StatusNotFound)
			mustEqual(t, "POST to "+token, ts.status(http.MethodPost, u, []byte(handshakeJSON), nil), http.StatusNotFound)
			mustEqual(t, "SSE of "+token, ts.status(http.MethodGet, u, nil, sse), http.StatusNotFound)
			_, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(token), nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("upgrade with %q: got error %v, status %v, want 404", token, err, statusOf(resp))
			}
		}
	})
	t.Run("token of another hub", func(t *testing.T) {
		n := ts.negotiate("chat", "")
		mustEqual(t, "poll on another hub", ts.status(http.MethodGet, ts.hubURL("other", "id="+url.QueryEscape(n.ConnectionToken)), nil, nil), http.StatusNotFound)
	})
	t.Run("second WebSocket", func(t *testing.T) {
		c := ts.openWS("chat", "")
		_, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(c.token), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
			t.Fatalf("second upgrade: got error %v, status %v, want 409", err, statusOf(resp))
		}
		u := ts.hubURL("chat", "id="+url.QueryEscape(c.token))
		mustEqual(t, "POST to a WebSocket connection", ts.status(http.MethodPost, u, []byte(handshakeJSON), nil), http.StatusMethodNotAllowed)
		mustEqual(t, "DELETE of a WebSocket connection", ts.status(http.MethodDelete, u, nil, nil), http.StatusBadRequest)
		mustEqual(t, "poll of a WebSocket connection", ts.status(http.MethodGet, u, nil, nil), http.StatusBadRequest)
		// The first socket still works.
		if got := c.invoke("1", "SendToAll", "t", 1); got.Error != "" {
			t.Fatalf("invoke after the refused upgrade: got %s, want a result", got.raw)
		}
	})
	t.Run("change of transport", func(t *testing.T) {
		n := ts.negotiate("chat", "")
		u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
		mustEqual(t, "first poll", ts.status(http.MethodGet, u, nil, nil), http.StatusOK)
		mustEqual(t, "SSE after polling", ts.status(http.MethodGet, u, nil, sse), http.StatusBadRequest)
		_, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("upgrade after polling: got error %v, status %v, want 400", err, statusOf(resp))
		}
	})
	t.Run("DELETE", func(t *testing.T) {
		n := ts.openLP("chat")
		u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
		sseConn := ts.negotiate("chat", "")
		ts.openSSE("chat", sseConn.ConnectionToken)
		mustEqual(t, "DELETE of an SSE connection", ts.status(http.MethodDelete, ts.hubURL("chat", "id="+url.QueryEscape(sseConn.ConnectionToken)), nil, nil), http.StatusBadRequest)
		mustEqual(t, "DELETE of a long-polling connection", ts.status(http.MethodDelete, u, nil, nil), http.StatusAccepted)
		if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusNoContent {
			t.Fatalf("poll after DELETE: got %d %q, want 204", r.status, r.body)
		}
		waitFor(t, "the closed connection to leave the replicated state", func() (bool, string) {
			return !ts.cluster.recorded(t, n.ConnectionID), "still recorded"
		})
	})
	t.Run("other methods", func(t *testing.T) {
		n := ts.negotiate("chat", "")
		u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
		for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodHead} {
			mustEqual(t, m+" status", ts.status(m, u, nil, nil), http.StatusMethodNotAllowed)
		}
	})
}

func TestCORS(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.AllowedOrigins = []string{"https://app.example"} }))
	preflight := func(origin string) *http.Response {
		resp, _ := ts.do(http.MethodOptions, ts.url+"/hubs/chat/negotiate?negotiateVersion=1", nil, http.Header{
			"Origin":                         {origin},
			"Access-Control-Request-Method":  {"POST"},
			"Access-Control-Request-Headers": {"x-requested-with,x-signalr-user-agent,authorization,content-type"},
		})
		return resp
	}
	resp := preflight("https://app.example")
	mustEqual(t, "allowed preflight status", resp.StatusCode, http.StatusNoContent)
	mustEqual(t, "Access-Control-Allow-Origin", resp.Header.Get("Access-Control-Allow-Origin"), "https://app.example")
	mustEqual(t, "Access-Control-Allow-Credentials", resp.Header.Get("Access-Control-Allow-Credentials"), "true")
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"x-requested-with", "x-signalr-user-agent", "authorization", "content-type"} {
		if !strings.Contains(allowed, h) {
			t.Fatalf("Access-Control-Allow-Headers: got %q, want it to include %q", allowed, h)
		}
	}
	resp = preflight("https://evil.example")
	mustEqual(t, "disallowed preflight status", resp.StatusCode, http.StatusForbidden)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("disallowed preflight: got Access-Control-Allow-Origin %q, want none", got)
	}

	resp, _ = ts.do(http.MethodPost, ts.url+"/hubs/chat/negotiate?negotiateVersion=1", nil, http.Header{"Origin": {"https://app.example"}})
	mustEqual(t, "cross-origin negotiate status", resp.StatusCode, http.StatusOK)
	mustEqual(t, "cross-origin negotiate Access-Control-Allow-Origin", resp.Header.Get("Access-Control-Allow-Origin"), "https://app.example")

	evil := http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := ts.dialWS("chat", "", evil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("skip-negotiation upgrade from a disallowed origin: got error %v, status %v, want 403", err, statusOf(resp))
	}
	n := ts.negotiate("chat", "")
	_, resp, err = ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), evil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade from a disallowed origin: got error %v, status %v, want 403", err, statusOf(resp))
	}
	// The refused upgrade did not take the connection: an allowed origin
	// may still use it.
	c, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), http.Header{"Origin": {"https://app.example"}})
	if err != nil {
		t.Fatalf("upgrade from an allowed origin: got error %v, status %v, want a WebSocket", err, statusOf(resp))
	}
	c.handshake()
}

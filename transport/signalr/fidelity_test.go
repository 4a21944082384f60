package signalr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The texts a client sees for a bad invocation are ASP.NET's (issue 13,
// items 4 and 10).
func TestInvocationErrorTextsAreASPNETs(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	c := ts.openWS("chat", "")
	other := ts.openWS("chat", "")

	mustEqual(t, "unknown method", c.invoke("1", "Nope", "x").Error, "Unknown hub method 'Nope'")

	c.write(`{"type":4,"invocationId":"2","target":"SendToAll","arguments":["m"]}` + rs)
	mustEqual(t, "stream invocation of a relay method", c.next().Error,
		"The client attempted to invoke the non-streaming 'SendToAll' method with a streaming invocation.")
	c.write(`{"type":4,"invocationId":"3","target":"Nope","arguments":[]}` + rs)
	mustEqual(t, "stream invocation of an unknown method", c.next().Error, "Unknown hub method 'Nope'")

	// An upload stream: an error completion, and nothing is sent.
	c.write(`{"type":1,"invocationId":"4","target":"SendToAll","arguments":["msg"],"streamIds":["s1"]}` + rs)
	c.write(`{"type":2,"invocationId":"s1","item":42}` + rs)
	c.write(`{"type":3,"invocationId":"s1"}` + rs)
	r := c.next()
	mustEqual(t, "invocation with an upload stream", r.Error,
		"An unexpected error occurred invoking 'SendToAll' on the server. HubException: Client sent 1 stream(s), Hub method expects 0.")
	if r.Result != nil {
		t.Fatalf("invocation with an upload stream: got a result %s, want none", r.raw)
	}
	// The next send is the first thing the other client receives.
	if res := c.invoke("5", "SendToAll", "after"); res.Error != "" {
		t.Fatalf("SendToAll: %s", res.raw)
	}
	if got := other.next(); got.Target != "after" {
		t.Fatalf("other client: got %s first, want the send after the refused upload", got.raw)
	}
}

// A handshake that does not parse, and one that never comes, get ASP.NET's
// handshake errors before the transport closes.
func TestHandshakeErrorTexts(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond }))
	for _, tc := range []struct{ name, send, want string }{
		{"bad handshake", `{"protocol":1}` + rs, `{"error":"An unexpected error occurred during connection handshake."}`},
		{"no handshake", "", `{"error":"Handshake was canceled."}`},
	} {
		ws, resp, err := ts.dialWS("chat", "", nil)
		if err != nil {
			t.Fatalf("%s: dial: %v (%v)", tc.name, err, statusOf(resp))
		}
		if tc.send != "" {
			ws.write(tc.send)
		}
		if f := ws.frame(); string(f.data) != tc.want+rs {
			t.Fatalf("%s: got %q, want %q", tc.name, f.data, tc.want+rs)
		}
	}
}

// Small HTTP answers as ASP.NET gives them.
func TestHTTPAnswersAreASPNETs(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	_, body := ts.negotiateRaw("chat", "negotiateVersion=abc")
	mustEqual(t, "negotiateVersion=abc", strings.TrimSpace(string(body)), `{"error":"The client requested an invalid protocol version 'abc'"}`)
	mustEqual(t, "PUT /hubs/chat", ts.status(http.MethodPut, ts.hubURL("chat", ""), nil, nil), http.StatusMethodNotAllowed)
	mustEqual(t, "OPTIONS negotiate without Origin", ts.status(http.MethodOptions, ts.url+"/hubs/chat/negotiate", nil, nil), http.StatusMethodNotAllowed)

	// A POST before the first poll is taken, and handled once the poll
	// binds the transport.
	n := ts.negotiate("chat", "")
	u := ts.hubURL("chat", "id="+url.QueryEscape(n.ConnectionToken))
	mustEqual(t, "POST before the first poll", ts.status(http.MethodPost, u, []byte(handshakeJSON), nil), http.StatusOK)
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusOK {
		t.Fatalf("first poll: got %d %q, want 200", r.status, r.body)
	}
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusOK || r.body != "{}"+rs {
		t.Fatalf("second poll: got %d %q, want the handshake answer", r.status, r.body)
	}
}

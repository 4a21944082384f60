package signalr2

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
)

// TestNegotiate: the fields of ASP.NET SignalR 2.4's negotiate, the
// protocol version clamped to 2.0, Url the path before /negotiate, and no
// availableTransports (the 2.x clients would take the server for ASP.NET
// Core).
func TestNegotiate(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, err := NewServer(tc, Options{Secrets: [][]byte{testSecret}, Authenticate: testAuth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	mux := http.NewServeMux()
	mux.Handle("/app/signalr/", s)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	for _, tt := range []struct{ client, want string }{{"2.1", "2.0"}, {"1.5", "1.5"}, {"", "2.0"}} {
		resp, err := http.Get(hs.URL + "/app/signalr/NEGOTIATE?clientProtocol=" + tt.client + "&connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D&_=123")
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		want := map[string]any{"Url": "/app/signalr", "KeepAliveTimeout": 20.0, "DisconnectTimeout": 30.0, "ConnectionTimeout": 110.0,
			"TryWebSockets": true, "ProtocolVersion": tt.want, "TransportConnectTimeout": 5.0, "LongPollDelay": 0.0}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("clientProtocol %q: %s = %v, want %v", tt.client, k, body[k], v)
			}
		}
		if _, ok := body["availableTransports"]; ok {
			t.Error("negotiate has availableTransports")
		}
		id, _ := body["ConnectionId"].(string)
		if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
			t.Errorf("ConnectionId = %q, want a GUID", id)
		}
		tok, _ := body["ConnectionToken"].(string)
		if parsed, err := s.conns.openConnectionToken(tok); err != nil || parsed.ConnID != id {
			t.Errorf("ConnectionToken %q: %v, %+v; want it to name %s", tok, err, parsed, id)
		}
	}
}

// TestBadInputIsRefusedAndChangesNothing: every malformed or unauthorized
// request gets a clear error with the right status and records nothing.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{MaxMessageSize: 1024})
	good := negotiate(t, hs.URL, "alice", "chat")
	lp := url.Values{"transport": {transportLongPoll}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range lp {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	tampered := []byte(good.token)
	tampered[3] ^= 1
	hubs := make([]string, 17)
	for i := range hubs {
		hubs[i] = fmt.Sprintf(`{"name":"h%d"}`, i)
	}
	cases := []struct {
		name       string
		c          client
		method     string
		what       string
		q, form    url.Values
		status     int
		wantInBody string
	}{
		{"no token", client{user: "alice"}, "POST", "connect", lp, nil, 400, "Missing connection token"},
		{"tampered token", client{user: "alice", token: string(tampered)}, "POST", "connect", lp, nil, 400, "Invalid connection token"},
		{"another user's token", client{user: "mallory", token: good.token}, "POST", "connect", lp, nil, 403, "issued to another user"},
		{"unknown transport", *good, "GET", "connect", with("transport", "foreverFrame"), nil, 400, "Unknown transport"},
		{"no transport", *good, "GET", "connect", url.Values{}, nil, 400, "Unknown transport"},
		{"websockets without upgrade", *good, "GET", "connect", with("transport", transportWebSockets), nil, 400, "Not a valid websocket request"},
		{"poll over sse", *good, "GET", "poll", with("transport", transportSSE, "messageId", "1"), nil, 400, "longPolling"},
		{"poll without messageId", *good, "POST", "poll", lp, url.Values{}, 400, "needs messageId"},
		{"foreign messageId", *good, "POST", "poll", lp, url.Values{"messageId": {"d-ABC-1,2|3,4"}}, 400, "decimal message index"},
		{"huge messageId", *good, "POST", "poll", lp, url.Values{"messageId": {"99999999999999999999999"}}, 400, "decimal message index"},
		{"connectionData not JSON", client{user: "alice", token: good.token, data: "{{"}, "POST", "connect", lp, nil, 400, "connectionData"},
		{"bad hub name", client{user: "alice", token: good.token, data: `[{"name":"1chat"}]`}, "POST", "connect", lp, nil, 400, "must start with a letter"},
		{"hub twice", client{user: "alice", token: good.token, data: `[{"name":"Chat"},{"Name":"chat"}]`}, "POST", "connect", lp, nil, 400, "listed twice"},
		{"too many hubs", client{user: "alice", token: good.token, data: "[" + strings.Join(hubs, ",") + "]"}, "POST", "connect", lp, nil, 400, "at most 16"},
		{"send without data", *good, "POST", "send", lp, url.Values{}, 400, "needs the form field data"},
		{"send not JSON", *good, "POST", "send", lp, url.Values{"data": {"{"}}, 400, "bad hub invocation"},
		{"send without id", *good, "POST", "send", lp, url.Values{"data": {`{"H":"chat","M":"SendToAll","A":["m"]}`}}, 400, "I (the invocation id) is required"},
		{"send too large", *good, "POST", "send", lp, url.Values{"data": {strings.Repeat("x", 2000)}}, 413, "larger than 1024"},
		{"JSONP", *good, "GET", "negotiate", url.Values{"callback": {"f"}}, nil, 403, "JSONP"},
		{"unknown endpoint", *good, "GET", "frobnicate", lp, nil, 404, "no SignalR 2 endpoint"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.t, c.base = t, hs.URL
			status, body := c.do(tt.method, tt.what, tt.q, tt.form)
			if status != tt.status || !strings.Contains(body, tt.wantInBody) {
				t.Fatalf("%s %s = %d %q, want %d containing %q", tt.method, tt.what, status, body, tt.status, tt.wantInBody)
			}
		})
	}
	// An unauthorized client gets 401 with WWW-Authenticate.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/signalr/negotiate?connectionData=[]", nil)
	req.Header.Set("X-Test-Deny", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("denied negotiate = %d (WWW-Authenticate %q), want 401 with WWW-Authenticate", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if st, err := tc.f.Stats(); err != nil || st.Connections != 0 || st.LastMessage != 0 {
		t.Fatalf("after bad requests the store has %+v (%v), want no connection and no message", st, err)
	}
}

// TestRelayMethods: each relay method over /send, its response ({"I","R"}
// with the message index for a send, no R for a group change, {"I","E"}
// for a refusal), and the messages it commits as the poll reads them.
func TestRelayMethods(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{MaxGroupsPerConnection: 2, RelayDisabled: []string{"Quiet"}, ConnectionTimeout: 100 * time.Millisecond})
	a := negotiate(t, hs.URL, "alice", "chat", "quiet")
	b := negotiate(t, hs.URL, "bob", "chat")
	initA, initB := a.connectLP(), b.connectLP()

	if r := a.send(`{"H":"CHAT","M":"joingroup","A":["g1"],"I":"x1"}`); r["I"] != "x1" || r["E"] != nil || len(r) != 1 {
		t.Fatalf("JoinGroup = %v, want {I: x1}", r)
	}
	index := func(r map[string]any) uint64 {
		t.Helper()
		f, ok := r["R"].(float64)
		if !ok || r["E"] != nil {
			t.Fatalf("send response %v, want R a message index", r)
		}
		return uint64(f)
	}
	i1 := index(b.send(`{"H":"chat","M":"SendToGroup","A":["g1","m",1,{"k":"v"}],"I":1}`))
	i2 := index(b.send(`{"H":"chat","M":"SendToUser","A":["alice","m",2],"I":2}`))
	i3 := index(b.send(`{"H":"chat","M":"SendToConnection","A":["` + a.id + `","m",3],"I":3}`))
	i4 := index(a.send(`{"H":"chat","M":"SendToAll","A":["m",4],"I":4}`))
	if !(i1 < i2 && i2 < i3 && i3 < i4) {
		t.Fatalf("indexes %d %d %d %d do not increase", i1, i2, i3, i4)
	}
	gotA := a.poll(initA.C, "")
	if want := []string{`chat.m[1,{"k":"v"}]`, `chat.m[2]`, `chat.m[3]`, `chat.m[4]`}; strings.Join(calls(gotA), " ") != strings.Join(want, " ") {
		t.Fatalf("alice polled %v, want %v", calls(gotA), want)
	}
	// After LeaveGroup the group's messages are not alice's any more.
	a.send(`{"H":"chat","M":"LeaveGroup","A":["g1"],"I":5}`)
	i5 := index(b.send(`{"H":"chat","M":"SendToGroup","A":["g1","m",5],"I":6}`))
	if got := a.poll(gotA.C, gotA.G); len(got.M) != 0 || got.C != formatCursor(i5) {
		t.Fatalf("alice polled %v (C %s) after leaving, want nothing up to %d", calls(got), got.C, i5)
	}
	if gotB := b.poll(initB.C, ""); strings.Join(calls(gotB), " ") != `chat.m[4]` {
		t.Fatalf("bob polled %v, want only the broadcast", calls(gotB))
	}

	for _, tt := range []struct{ inv, wantErr string }{
		{`{"H":"chat","M":"Send","A":["x"],"I":1}`, "'Send' method could not be resolved"},
		{`{"H":"chat","M":"SendToGroup","A":[],"I":1}`, "the group name is missing"},
		{`{"H":"chat","M":"SendToGroup","A":["g",""],"I":1}`, "the target method name must be a non-empty string"},
		{`{"H":"chat","M":"JoinGroup","A":["g","extra"],"I":1}`, "one argument"},
		{`{"H":"quiet","M":"SendToAll","A":["m"],"I":1}`, "relay methods are switched off"},
		{`{"H":"1hub","M":"SendToAll","A":["m"],"I":1}`, "Hub could not be resolved"},
		{`{"H":"elsewhere","M":"JoinGroup","A":["g"],"I":1}`, "did not subscribe to hub 'elsewhere'"},
	} {
		r := a.send(tt.inv)
		if e, _ := r["E"].(string); !strings.Contains(e, tt.wantErr) || r["H"] != true || r["R"] != nil {
			t.Errorf("%s = %v, want a hub error containing %q", tt.inv, r, tt.wantErr)
		}
	}
	// The group limit.
	a.send(`{"H":"chat","M":"JoinGroup","A":["g2"],"I":1}`)
	a.send(`{"H":"chat","M":"JoinGroup","A":["g3"],"I":1}`)
	if r := a.send(`{"H":"chat","M":"JoinGroup","A":["g4"],"I":1}`); !strings.Contains(fmt.Sprint(r["E"]), "already in 2 groups") {
		t.Fatalf("a third JoinGroup = %v, want the group limit", r)
	}
	// A send to a hub the connection did not subscribe to is allowed (as
	// in ASP.NET SignalR 2, where pages without client methods still call
	// the server).
	if r := a.send(`{"H":"elsewhere","M":"SendToAll","A":["m"],"I":9}`); r["R"] == nil {
		t.Fatalf("send to another hub = %v, want a message index", r)
	}
}

// TestRelayPermissions: under the roles policy a relay method needs the
// token's permission, per group where it applies.
func TestRelayPermissions(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	auth := func(r *http.Request, hubs []string) (Identity, error) {
		return Identity{UserID: r.Header.Get("X-Test-User"), Permissions: access.Permissions{"backplane.joinLeaveGroup.lobby"}}, nil
	}
	_, hs := newTestServer(t, tc, Options{RelayPolicy: access.RelayRoles, Authenticate: auth})
	c := negotiate(t, hs.URL, "u", "chat")
	c.connectLP()
	if r := c.send(`{"H":"chat","M":"JoinGroup","A":["lobby"],"I":1}`); r["E"] != nil {
		t.Fatalf("JoinGroup lobby = %v, want it granted", r)
	}
	for _, inv := range []string{
		`{"H":"chat","M":"JoinGroup","A":["admins"],"I":2}`,
		`{"H":"chat","M":"SendToAll","A":["m"],"I":3}`,
		`{"H":"chat","M":"SendToGroup","A":["lobby","m"],"I":4}`,
	} {
		if r := c.send(inv); !strings.Contains(fmt.Sprint(r["E"]), "permission denied") {
			t.Errorf("%s = %v, want permission denied", inv, r)
		}
	}
}

// TestAbortAndStartAndPing: /start answers started once the record is
// there, /abort closes the record, /ping needs no token.
func TestAbortAndStartAndPing(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{})
	c := negotiate(t, hs.URL, "", "chat")
	c.connectLP()
	if st, body := c.do(http.MethodGet, "start", url.Values{"transport": {transportLongPoll}}, nil); st != 200 || body != `{"Response":"started"}` {
		t.Fatalf("start = %d %s", st, body)
	}
	resp := c.doResp(http.MethodPost, "abort", url.Values{"transport": {transportLongPoll}}, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("abort = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, open, _ := tc.Holder("chat", c.id); open {
		t.Fatal("the connection is still open after /abort")
	}
	anon := client{t: t, base: hs.URL}
	if st, body := anon.do(http.MethodGet, "ping", nil, nil); st != 200 || body != `{"Response":"pong"}` {
		t.Fatalf("ping = %d %s", st, body)
	}
}

// TestProxyScript: /signalr/hubs is JavaScript naming the relay methods
// and the hubs asked for, and nothing that is not a hub name.
func TestProxyScript(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{})
	c := client{t: t, base: hs.URL}
	resp := c.doResp(http.MethodGet, "hubs", url.Values{"hub": {"chatHub,</script><script>alert(1)", "other_hub"}}, nil, nil)
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := fmt.Fprint(&b, readAll(t, resp)); err != nil {
		t.Fatal(err)
	}
	js := b.String()
	if ct := resp.Header.Get("Content-Type"); ct != "application/javascript; charset=UTF-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	for _, want := range []string{`hubNames = ["chatHub","other_hub"]`, `"SendToConnection"`, `$.hubConnection("/signalr"`, "createHubProxies"} {
		if !strings.Contains(js, want) {
			t.Errorf("the script lacks %q", want)
		}
	}
	if strings.Contains(js, "alert(1)") {
		t.Error("the script carries a name that is not a hub name")
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

package node

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/access"
)

// clientToken signs an HS256 client token with the test access key for
// user, valid for ttl, with extra claims (role, hub, aud, iss…).
func clientToken(t *testing.T, user string, ttl time.Duration, extra jwt.MapClaims) string {
	t.Helper()
	claims := jwt.MapClaims{"nameid": user, "exp": time.Now().Add(ttl).Unix()}
	for k, v := range extra {
		claims[k] = v
	}
	return sign(t, jwt.SigningMethodHS256, []byte(testAccessKey), "", claims)
}

// restToken is a server REST token for a URL of n (Azure style: the URL is
// the audience).
func restToken(t *testing.T, n *testNode, path string) map[string]string {
	t.Helper()
	tok := signToken(t, testAccessKey, jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Audience:  jwt.ClaimStrings{n.url(path)},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	})
	return map[string]string{"Authorization": "Bearer " + tok}
}

// hubClient is a SignalR JSON client over WebSocket that skipped
// negotiation.
type hubClient struct {
	t    *testing.T
	ws   *websocket.Conn
	recs chan map[string]any
}

const recordSeparator = "\x1e"

// dialHub connects to hub on n with token and completes the handshake.
func dialHub(t *testing.T, n *testNode, hub, token string) *hubClient {
	t.Helper()
	u := "ws://" + n.HTTPAddr() + "/hubs/" + hub + "?access_token=" + url.QueryEscape(token)
	ws := testkit.DialWS(t, &websocket.Dialer{HandshakeTimeout: 5 * time.Second}, u, nil, hub)
	c := &hubClient{t: t, ws: ws, recs: make(chan map[string]any, 100)}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+recordSeparator)); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.recs)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			for _, raw := range strings.Split(string(data), recordSeparator) {
				if raw == "" {
					continue
				}
				var rec map[string]any
				if json.Unmarshal([]byte(raw), &rec) == nil {
					c.recs <- rec
				}
			}
		}
	}()
	if rec := c.next(); len(rec) != 0 {
		t.Fatalf("handshake answer: got %v, want {}", rec)
	}
	return c
}

// next returns the next record that is not a Ping.
func (c *hubClient) next() map[string]any {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case rec, ok := <-c.recs:
			if !ok {
				c.t.Fatal("connection closed, want a record")
			}
			if rec["type"] != float64(6) {
				return rec
			}
		case <-deadline:
			c.t.Fatal("no record within 10s")
		}
	}
}

// invoke calls a hub method and returns its Completion's error ("" for
// success).
func (c *hubClient) invoke(id, target string, args ...any) string {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"type": 1, "invocationId": id, "target": target, "arguments": args})
	if err := c.ws.WriteMessage(websocket.TextMessage, append(b, recordSeparator...)); err != nil {
		c.t.Fatal(err)
	}
	for {
		rec := c.next()
		if rec["type"] == float64(3) && rec["invocationId"] == id {
			e, _ := rec["error"].(string)
			return e
		}
	}
}

// With -access-key and no -relay-policy the policy is roles: a token
// without roles gets an error for every relay method, naming the missing
// permission; nothing is committed, the connection stays open, and what a
// token grants still works. The server REST API may do everything.
func TestRelayPolicyDefaultsToRolesWithAccessKey(t *testing.T) {
	if RelayRoles != access.RelayRoles || RelayOpen != access.RelayOpen {
		t.Fatalf("node and transport name the policies differently: %q/%q vs %q/%q", RelayRoles, RelayOpen, access.RelayRoles, access.RelayOpen)
	}
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	if n.cfg.RelayPolicy != RelayRoles {
		t.Fatalf("relay policy with -access-key: got %q, want %q", n.cfg.RelayPolicy, RelayRoles)
	}
	bob := dialHub(t, n, "chat", clientToken(t, "bob", time.Hour, jwt.MapClaims{"role": "backplane.joinLeaveGroup.admins"}))
	if e := bob.invoke("1", "JoinGroup", "admins"); e != "" {
		t.Fatalf("bob joins admins: got error %q, want success", e)
	}
	mallory := dialHub(t, n, "chat", clientToken(t, "mallory", time.Hour, nil))
	last := n.fsm.LastMessage()

	for _, tc := range []struct {
		target string
		args   []any
		want   string
	}{
		{"JoinGroup", []any{"admins"}, "Failed to invoke 'JoinGroup': permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins"},
		{"SendToUser", []any{"bob", "m", "x"}, "Failed to invoke 'SendToUser': permission denied: the token does not grant backplane.sendToUser"},
		{"SendToAll", []any{"m", "x"}, "Failed to invoke 'SendToAll': permission denied: the token does not grant backplane.sendToAll"},
		{"SendToGroup", []any{"admins", "m", "x"}, "Failed to invoke 'SendToGroup': permission denied: the token does not grant backplane.sendToGroup or backplane.sendToGroup.admins"},
		{"SendToConnection", []any{"someone", "m", "x"}, "Failed to invoke 'SendToConnection': permission denied: the token does not grant backplane.sendToConnection"},
		{"LeaveGroup", []any{"admins"}, "Failed to invoke 'LeaveGroup': permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins"},
	} {
		if got := mallory.invoke(tc.target, tc.target, tc.args...); got != tc.want {
			t.Errorf("mallory %s: got error %q, want %q", tc.target, got, tc.want)
		}
	}
	if got := n.fsm.LastMessage(); got != last {
		t.Fatalf("last message after the denied invocations: got %d, want %d (nothing committed)", got, last)
	}
	members, err := n.fsm.GroupMembers("chat", "admins")
	if err != nil || len(members) != 1 {
		t.Fatalf("members of admins: got %+v (%v), want bob's connection only", members, err)
	}

	// Mallory's connection still works: a sender with backplane.sendToAll
	// and the REST API (as the server: everything) reach her.
	alice := dialHub(t, n, "chat", clientToken(t, "alice", time.Hour, jwt.MapClaims{"role": []string{"backplane.sendToAll"}}))
	if e := alice.invoke("1", "SendToAll", "fromAlice"); e != "" {
		t.Fatalf("alice's SendToAll: got error %q, want success", e)
	}
	if rec := mallory.next(); rec["target"] != "fromAlice" {
		t.Fatalf("mallory after the denials: got %v, want alice's broadcast", rec)
	}
	res := doHTTP(t, http.MethodPost, n.url("/api/v1/hubs/chat/groups/admins"), []byte(`{"target":"fromServer","arguments":[]}`), restToken(t, n, "/api/v1/hubs/chat/groups/admins"))
	if res.status != http.StatusAccepted {
		t.Fatalf("REST send to admins: got %d %s, want 202", res.status, res.body)
	}
	if rec := bob.next(); rec["target"] != "fromAlice" {
		t.Fatalf("bob: got %v, want alice's broadcast", rec)
	}
	if rec := bob.next(); rec["target"] != "fromServer" {
		t.Fatalf("bob: got %v, want the server's group message", rec)
	}
	if e := mallory.invoke("again", "SendToAll", "m"); !strings.Contains(e, "permission denied") {
		t.Fatalf("mallory's next invocation: got %q, want it answered (denied) on the open connection", e)
	}
}

// -relay-policy open keeps today's behaviour with client tokens.
func TestRelayPolicyOpenWithAccessKey(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey, tweak: func(cfg *Config) { cfg.RelayPolicy = RelayOpen }})
	n := c.nodes[0]
	mallory := dialHub(t, n, "chat", clientToken(t, "mallory", time.Hour, nil))
	for _, inv := range [][]any{{"JoinGroup", "admins"}, {"SendToGroup", "admins", "m"}, {"SendToAll", "m"}, {"SendToUser", "bob", "m"}, {"LeaveGroup", "admins"}} {
		if e := mallory.invoke(inv[0].(string), inv[0].(string), inv[1:]...); e != "" {
			t.Errorf("%s under open: got error %q, want success", inv[0], e)
		}
	}
	got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/chat/poll?after=0&timeout=0&group=admins&access_token="+clientToken(t, "mallory", time.Hour, nil)), nil, nil)
	if got.status != http.StatusOK {
		t.Fatalf("poll of admins under open: got %d %s, want 200", got.status, got.body)
	}
}

// Under roles, a native stream's group= needs backplane.joinLeaveGroup or
// backplane.joinLeaveGroup.<group>: the poll endpoint does not read a
// group's history without it.
func TestNativeStreamGroupsNeedPermission(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	path := "/api/v1/hubs/chat/groups/admins"
	if res := doHTTP(t, http.MethodPost, n.url(path), []byte(`{"target":"secret","arguments":[]}`), restToken(t, n, path)); res.status != http.StatusAccepted {
		t.Fatalf("REST send to admins: got %d %s, want 202", res.status, res.body)
	}
	mallory := clientToken(t, "mallory", time.Hour, nil)
	room1 := clientToken(t, "carol", time.Hour, jwt.MapClaims{"role": "backplane.joinLeaveGroup.room1"})
	admin := clientToken(t, "dave", time.Hour, jwt.MapClaims{"role": []string{"backplane.joinLeaveGroup.admins"}})
	anyGroup := clientToken(t, "erin", time.Hour, jwt.MapClaims{"role": "backplane.joinLeaveGroup"})
	for _, tc := range []struct {
		name, token, query string
		want               int
	}{
		{"no role", mallory, "group=admins", http.StatusForbidden},
		{"another group's role", room1, "group=admins", http.StatusForbidden},
		{"the group's role", admin, "group=admins", http.StatusOK},
		{"every group's role", anyGroup, "group=admins", http.StatusOK},
		{"broadcasts need no role", mallory, "", http.StatusOK},
	} {
		got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/chat/poll?after=0&timeout=0&"+tc.query+"&access_token="+tc.token), nil, nil)
		if got.status != tc.want {
			t.Errorf("poll, %s: got %d %s, want %d", tc.name, got.status, got.body, tc.want)
			continue
		}
		body := string(got.body)
		switch {
		case tc.want == http.StatusForbidden && !contains(body, "backplane.joinLeaveGroup.admins"):
			t.Errorf("poll, %s: got %s, want the refusal to name backplane.joinLeaveGroup.admins", tc.name, body)
		case tc.want == http.StatusOK && contains(body, `"secret"`) != (tc.query != ""):
			t.Errorf("poll, %s: got %s, want the admins message exactly when following admins", tc.name, body)
		}
	}
	got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/chat/stream?after=0&group=admins&access_token="+mallory), nil, nil)
	if got.status != http.StatusForbidden || !contains(string(got.body), "permission denied") {
		t.Fatalf("SSE stream of admins without the role: got %d %s, want 403", got.status, got.body)
	}
}

// An SSE stream ends by itself when its token expires.
func TestSSEStreamEndsWhenItsTokenExpires(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	tok := clientToken(t, "mallory", 2*time.Second, nil)
	resp, err := http.Get(n.url("/v1/hubs/chat/stream?after=0&access_token=" + tok))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: got status %d, want 200", resp.StatusCode)
	}
	ended := make(chan string, 1)
	go func() {
		var last string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				last = sc.Text()
			}
		}
		ended <- last
	}()
	select {
	case last := <-ended:
		if last != ": access token expired" {
			t.Fatalf("stream ended with %q last, want \": access token expired\"", last)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("SSE stream still open 15s after its token's 2s expiry, want it ended")
	}
}

// -jwt-audience and -jwt-issuer are checked when set; a token bound to a
// hub (hub claim) works on that hub only, for negotiate, SignalR
// connections and native streams.
func TestClientTokenAudienceIssuerAndHub(t *testing.T) {
	const aud, iss = "backplane-clients", "backplane-test-issuer"
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey, tweak: func(cfg *Config) {
		cfg.JWTAudience, cfg.JWTIssuer = aud, iss
	}})
	n := c.nodes[0]
	good := jwt.MapClaims{"aud": aud, "iss": iss}
	with := func(extra jwt.MapClaims) jwt.MapClaims {
		out := jwt.MapClaims{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range extra {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		claims    jwt.MapClaims
		hub       string
		poll, neg int
		msg       string
	}{
		{"right audience and issuer", good, "chat", 200, 200, ""},
		{"audience among several", with(jwt.MapClaims{"aud": []string{"someone-else", aud}}), "chat", 200, 200, ""},
		{"wrong audience", with(jwt.MapClaims{"aud": "someone-else"}), "chat", 401, 401, "audience"},
		{"no audience", with(jwt.MapClaims{"aud": nil}), "chat", 401, 401, "audience"},
		{"wrong issuer", with(jwt.MapClaims{"iss": "mallory"}), "chat", 401, 401, "issuer"},
		{"no issuer", with(jwt.MapClaims{"iss": nil}), "chat", 401, 401, "issuer"},
		{"bound to its hub", with(jwt.MapClaims{"hub": "chat"}), "chat", 200, 200, ""},
		{"bound to another hub", with(jwt.MapClaims{"hub": "chat"}), "other", 403, 401, "bound to hub"},
	} {
		tok := clientToken(t, "alice", time.Hour, tc.claims)
		got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/"+tc.hub+"/poll?after=0&timeout=0&access_token="+tok), nil, nil)
		if got.status != tc.poll || !contains(string(got.body), tc.msg) {
			t.Errorf("%s: poll on %s: got %d %s, want %d mentioning %q", tc.name, tc.hub, got.status, got.body, tc.poll, tc.msg)
		}
		got = doHTTP(t, http.MethodPost, n.url("/hubs/"+tc.hub+"/negotiate?negotiateVersion=1"), nil, map[string]string{"Authorization": "Bearer " + tok})
		if got.status != tc.neg || !contains(string(got.body), tc.msg) {
			t.Errorf("%s: negotiate on %s: got %d %s, want %d mentioning %q", tc.name, tc.hub, got.status, got.body, tc.neg, tc.msg)
		}
	}
	// The WebSocket transport without negotiation checks the binding too.
	tok := clientToken(t, "alice", time.Hour, with(jwt.MapClaims{"hub": "chat"}))
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+n.HTTPAddr()+"/hubs/other?access_token="+tok, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket on another hub than the token's: got %v (%v), want 401", resp, err)
	}
	dialHub(t, n, "chat", tok)
}

// Azure's client audience <endpoint>/client/?hub=<hub> binds a token to
// that hub (matched case-insensitively), and is not refused by an
// audience check when -jwt-audience is unset.
func TestAzureClientAudienceBindsTheHub(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	tok := clientToken(t, "alice", time.Hour, jwt.MapClaims{"aud": n.url("/client/?hub=CHAT")})
	for _, tc := range []struct {
		hub       string
		poll, neg int
	}{{"chat", 200, 200}, {"Chat", 200, 200}, {"other", 403, 401}} {
		got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/"+tc.hub+"/poll?after=0&timeout=0&access_token="+tok), nil, nil)
		if got.status != tc.poll {
			t.Errorf("poll on %s: got %d %s, want %d", tc.hub, got.status, got.body, tc.poll)
		}
		got = doHTTP(t, http.MethodPost, n.url("/hubs/"+tc.hub+"/negotiate?negotiateVersion=1&access_token="+tok), nil, nil)
		if got.status != tc.neg {
			t.Errorf("negotiate on %s: got %d %s, want %d", tc.hub, got.status, got.body, tc.neg)
		}
		if tc.neg != 200 && !contains(string(got.body), `binds it to hub "CHAT"`) {
			t.Errorf("negotiate on %s: got %s, want the refusal to name the hub", tc.hub, got.body)
		}
	}
}

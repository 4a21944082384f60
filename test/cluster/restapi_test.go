package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// The versioned server REST API (2022-06-01 and 2024-12-01) against three
// nodes of the built binary: every route, each call sent to another node
// than the one that holds the connections it affects, with SignalR
// clients (JSON over WebSocket) that record what they receive.

// apiClient is a SignalR connection held by one node.
type apiClient struct {
	t      *testing.T
	name   string
	id     string // the connection id
	holder *node
	conn   *websocket.Conn
	recs   chan apiRecord
	closed chan struct{} // closed when the server closed the connection
	mu     sync.Mutex
	reason string // the Close message's error, if one came
}

// apiRecord is one invocation a client received.
type apiRecord struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

// holdConn opens a SignalR connection on holder to hub, as user (none
// when user is ""), with a client token signed with the cluster's access
// key, or with tok when it is set.
func holdConn(t *testing.T, holder *node, hub, name, user, tok string) *apiClient {
	t.Helper()
	if tok == "" {
		claims := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
		if user != "" {
			claims["nameid"] = user
		}
		var err error
		if tok, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(clientAccessKey)); err != nil {
			t.Fatal(err)
		}
	}
	id, connToken := negotiateSignalR(t, holder, hub, http.Header{"Authorization": {"Bearer " + tok}}, name)
	if id == "" {
		t.Fatalf("negotiate %s on %s: no connectionId", name, holder)
	}
	u := "ws://" + holder.httpAddr + "/hubs/" + hub + "?" + url.Values{"id": {connToken}, "access_token": {tok}}.Encode()
	conn := signalRHandshake(t, &websocket.Dialer{HandshakeTimeout: 10 * time.Second}, u, name+" on "+holder.id)
	_ = conn.SetReadDeadline(time.Time{})
	c := &apiClient{t: t, name: name, id: id, holder: holder, conn: conn, recs: make(chan apiRecord, 256), closed: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *apiClient) readLoop() {
	defer close(c.closed)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		for _, raw := range strings.Split(strings.TrimSuffix(string(data), "\x1e"), "\x1e") {
			var m struct {
				Type  int    `json:"type"`
				Error string `json:"error"`
				apiRecord
			}
			if json.Unmarshal([]byte(raw), &m) != nil {
				continue
			}
			switch m.Type {
			case 1:
				c.recs <- m.apiRecord
			case 7:
				c.mu.Lock()
				c.reason = m.Error
				c.mu.Unlock()
				return
			}
		}
	}
}

// next waits for the next invocation the client receives.
func (c *apiClient) next() (apiRecord, bool) {
	c.t.Helper()
	select {
	case r := <-c.recs:
		return r, true
	case <-c.closed:
		select {
		case r := <-c.recs:
			return r, true
		default:
			return apiRecord{}, false
		}
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s (%s on %s): nothing received within 10s", c.name, c.id, c.holder)
		return apiRecord{}, false
	}
}

// expect checks that the next invocation the client receives is target.
func (c *apiClient) expect(target string) {
	c.t.Helper()
	r, ok := c.next()
	if !ok || r.Target != target {
		c.t.Fatalf("%s (%s on %s): got %q (open %v), want %q", c.name, c.id, c.holder, r.Target, ok, target)
	}
}

// waitClosed waits for the server to close the connection.
func (c *apiClient) waitClosed() {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s (%s on %s): still open 10s after it was closed through the API", c.name, c.id, c.holder)
	}
}

// restAPI calls the versioned API on via with api-version v, a REST token
// for the path, and more query parameters.
type restAPI struct {
	t *testing.T
	v string
}

func (a restAPI) call(via *node, method, path string, body []byte, query ...string) httpResult {
	a.t.Helper()
	q := url.Values{"api-version": {a.v}}
	for _, kv := range query {
		k, v, _ := strings.Cut(kv, "=")
		q.Add(k, v)
	}
	res, err := do(method, via.baseURL()+path+"?"+q.Encode(), body, serverToken(a.t, via, path))
	if err != nil {
		a.t.Fatalf("%s %s via %s: %v", method, path, via, err)
	}
	return res
}

// must is call that checks the status.
func (a restAPI) must(via *node, want int, method, path string, body []byte, query ...string) httpResult {
	a.t.Helper()
	res := a.call(via, method, path, body, query...)
	if res.Status != want {
		a.t.Fatalf("%s %s via %s (api-version %s): got %v, want %d", method, path, via, a.v, res, want)
	}
	return res
}

// send sends target to a path of the API (…/:send) and checks the 202
// carries the committed index.
func (a restAPI) send(via *node, path, target string, query ...string) {
	a.t.Helper()
	res := a.must(via, http.StatusAccepted, http.MethodPost, path, messageBody(target, "x"), query...)
	var out struct{ Index uint64 }
	if json.Unmarshal(res.Body, &out) != nil || out.Index == 0 || res.Header.Get("Backplane-Index") != fmt.Sprint(out.Index) {
		a.t.Fatalf("send to %s: %v, want 202 with the index", path, res)
	}
}

// marker sends a message to one connection only and waits for it: what
// reached the connection before it is what was sent to it before.
func (a restAPI) marker(via *node, hub string, c *apiClient, target string) {
	a.t.Helper()
	a.send(via, "/api/hubs/"+hub+"/connections/"+c.id+"/:send", target)
	c.expect(target)
}

// other is a node other than c's holder.
func other(nodes []*node, not ...*node) *node {
	for _, n := range nodes {
		skip := false
		for _, x := range not {
			skip = skip || n == x
		}
		if !skip {
			return n
		}
	}
	return nil
}

func TestRestAPIEveryRouteOnThreeNodes(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{ExtraArgs: []string{"-access-key", clientAccessKey}})
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.id+" to be ready", func() (bool, string) { return ready(n) })
	}
	for _, v := range []string{"2022-06-01", "2024-12-01"} {
		t.Run(v, func(t *testing.T) { restAPIRoutes(t, nodes, v) })
	}
}

func restAPIRoutes(t *testing.T, nodes []*node, v string) {
	api := restAPI{t: t, v: v}
	latest := v == "2024-12-01"
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	hub := "chat" + strings.ReplaceAll(v, "-", "")
	h := "/api/hubs/" + hub
	alice1 := holdConn(t, n1, hub, "alice1", "alice", "")
	alice2 := holdConn(t, n2, hub, "alice2", "alice", "")
	bob := holdConn(t, n3, hub, "bob", "bob", "")
	carol := holdConn(t, n2, hub, "carol", "carol", "")
	anon := holdConn(t, n1, hub, "anon", "", "")
	everyone := []*apiClient{alice1, alice2, bob, carol, anon}

	for _, n := range nodes {
		api.must(n, http.StatusOK, http.MethodHead, "/api/health", nil)
	}
	// Existence checks, each on another node than the holder: the read
	// waits for the leader's commit index, so the opens are visible.
	api.must(n2, http.StatusOK, http.MethodHead, h+"/connections/"+alice1.id, nil)
	api.must(n1, http.StatusNotFound, http.MethodHead, h+"/connections/nobody", nil)
	api.must(n3, http.StatusOK, http.MethodHead, h+"/users/alice", nil)
	api.must(n3, http.StatusNotFound, http.MethodHead, h+"/users/nobody", nil)

	// Group membership through other nodes than the holders.
	api.must(n1, http.StatusOK, http.MethodPut, h+"/groups/g1/connections/"+bob.id, nil)
	api.must(n3, http.StatusOK, http.MethodPut, h+"/users/alice/groups/g1", nil)
	api.must(n1, http.StatusNotFound, http.MethodPut, h+"/groups/g1/connections/nobody", nil)
	api.must(n2, http.StatusOK, http.MethodHead, h+"/groups/g1", nil)
	api.must(n1, http.StatusOK, http.MethodHead, h+"/users/alice/groups/g1", nil)
	api.must(n1, http.StatusNotFound, http.MethodHead, h+"/users/carol/groups/g1", nil)
	api.must(n2, http.StatusNotFound, http.MethodHead, h+"/groups/empty", nil)

	// Sends.
	api.send(n2, h+"/groups/g1/:send", "to-g1", "excluded="+alice2.id)
	alice1.expect("to-g1")
	bob.expect("to-g1")
	api.send(n3, h+"/users/alice/:send", "to-alice")
	alice1.expect("to-alice")
	alice2.expect("to-alice") // the group send excluded alice2: this comes first
	api.send(n1, h+"/connections/"+bob.id+"/:send", "to-bob")
	bob.expect("to-bob")
	api.send(n2, h+"/:send", "to-all", "excluded="+bob.id)
	for _, c := range []*apiClient{alice1, alice2, carol, anon} {
		c.expect("to-all")
	}
	api.marker(n1, hub, bob, "bob-marker")     // bob got nothing since to-bob
	api.marker(n1, hub, carol, "carol-marker") // carol got no group or user send

	// application isolates hubs: MyApp's Chat is myapp_chat.
	app := "app" + strings.ReplaceAll(v, "-", "")
	dave := holdConn(t, n2, app+"_"+strings.ToLower(hub), "dave", "dave", "")
	api.send(n3, "/api/hubs/"+strings.ToUpper(hub[:1])+hub[1:]+"/:send", "to-app", "application="+strings.ToUpper(app))
	dave.expect("to-app")
	api.marker(n3, hub, anon, "anon-marker") // the send to the app's hub did not reach the hub itself

	// A user added for a time: it reaches the group, then expires with no
	// other write, on every node.
	api.must(n3, http.StatusOK, http.MethodPut, h+"/users/carol/groups/gt", nil, "ttl=2")
	api.send(n1, h+"/groups/gt/:send", "to-gt")
	carol.expect("to-gt")
	waitFor(t, 15*time.Second, "carol's membership of gt to expire", func() (bool, string) {
		res := api.call(n2, http.MethodHead, h+"/users/carol/groups/gt", nil)
		return res.Status == http.StatusNotFound, res.String()
	})
	api.send(n1, h+"/groups/gt/:send", "to-gt-after")
	api.marker(n1, hub, carol, "carol-after-ttl")

	if latest {
		restAPILatest(t, api, nodes, hub, alice1, alice2, bob, carol, anon)
	} else {
		// The 2024-12-01 routes are not 2022-06-01's.
		for _, p := range []string{h + "/:execute", h + "/:generateToken", h + "/connections/" + bob.id + "/:invoke"} {
			if res := api.call(n1, http.MethodPost, p, []byte(`[]`)); res.Status != http.StatusBadRequest || res.Header.Get("x-ms-error-code") != "UnsupportedApiVersion" {
				t.Fatalf("%s with 2022-06-01: %v, want 400 UnsupportedApiVersion", p, res)
			}
		}
	}

	// Removing memberships.
	api.must(n2, http.StatusNoContent, http.MethodDelete, h+"/users/alice/groups/g1", nil)
	api.must(n3, http.StatusNotFound, http.MethodHead, h+"/users/alice/groups/g1", nil)
	api.must(n2, http.StatusOK, http.MethodDelete, h+"/groups/g1/connections/"+bob.id, nil)
	api.must(n1, http.StatusNotFound, http.MethodHead, h+"/groups/g1", nil)
	api.must(n1, http.StatusOK, http.MethodPut, h+"/groups/g2/connections/"+anon.id, nil) // anon is on n1; the next call goes to n3
	api.must(n3, http.StatusOK, http.MethodDelete, h+"/connections/"+anon.id+"/groups", nil)
	api.must(n2, http.StatusNotFound, http.MethodHead, h+"/groups/g2", nil)
	api.must(n1, http.StatusOK, http.MethodPut, h+"/users/bob/groups/g3", nil)
	api.must(n2, http.StatusNoContent, http.MethodDelete, h+"/users/bob/groups", nil)
	api.must(n3, http.StatusNotFound, http.MethodHead, h+"/users/bob/groups/g3", nil)

	// Closing: a user's connections on two nodes, through the third.
	api.must(n3, http.StatusNoContent, http.MethodPost, h+"/users/alice/:closeConnections", nil, "reason=bye")
	alice1.waitClosed()
	alice2.waitClosed()
	api.must(n2, http.StatusNotFound, http.MethodHead, h+"/connections/"+alice1.id, nil)
	// A group's, except one.
	api.must(n1, http.StatusOK, http.MethodPut, h+"/groups/gc/connections/"+bob.id, nil)
	api.must(n1, http.StatusOK, http.MethodPut, h+"/groups/gc/connections/"+carol.id, nil)
	api.must(n1, http.StatusNoContent, http.MethodPost, h+"/groups/gc/:closeConnections", nil, "excluded="+carol.id, "reason=group")
	bob.waitClosed()
	api.marker(n3, hub, carol, "carol-still-open")
	// One connection.
	api.must(n1, http.StatusOK, http.MethodDelete, h+"/connections/"+carol.id, nil, "reason=one")
	carol.waitClosed()
	// The hub's, except none: anon is the last.
	api.must(n2, http.StatusNoContent, http.MethodPost, h+"/:closeConnections", nil, "reason=all")
	anon.waitClosed()
	for _, c := range everyone {
		api.must(other(nodes, c.holder), http.StatusNotFound, http.MethodHead, h+"/connections/"+c.id, nil)
	}
	api.must(n1, http.StatusNotFound, http.MethodHead, h+"/users/alice", nil)
}

// restAPILatest checks what only 2024-12-01 has: the presence list,
// :execute with a filter, :generateToken, the access key, and the routes
// Backplane does not serve yet.
func restAPILatest(t *testing.T, api restAPI, nodes []*node, hub string, alice1, alice2, bob, carol, anon *apiClient) {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	h := "/api/hubs/" + hub

	// Presence after a join on another node: carol (held by n2) joins g1
	// through n1, and n3 lists her at once.
	api.must(n1, http.StatusOK, http.MethodPut, h+"/groups/g1/connections/"+carol.id, nil)
	want := map[string]string{alice1.id: "alice", alice2.id: "alice", bob.id: "bob", carol.id: "carol"}
	got := map[string]string{}
	next := ""
	for pages := 0; ; pages++ {
		var page struct {
			Value []struct {
				ConnectionID string `json:"connectionId"`
				UserID       string `json:"userId"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		var res httpResult
		if next == "" {
			res = api.must(n3, http.StatusOK, http.MethodGet, h+"/groups/g1/connections", nil, "maxpagesize=3")
		} else {
			var err error
			u, _ := url.Parse(next)
			if res, err = do(http.MethodGet, next, nil, serverToken(t, n3, u.Path)); err != nil || res.Status != http.StatusOK {
				t.Fatalf("nextLink %s: %v %v", next, res, err)
			}
		}
		if err := json.Unmarshal(res.Body, &page); err != nil || pages > 3 {
			t.Fatalf("presence page %d: %s: %v", pages, res.Body, err)
		}
		for _, m := range page.Value {
			got[m.ConnectionID] = m.UserID
		}
		if next = page.NextLink; next == "" {
			break
		}
		if !strings.HasPrefix(next, n3.baseURL()+h+"/groups/g1/connections?") {
			t.Fatalf("nextLink %q is not this node's list", next)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("presence of g1 on n3: got %v, want %v", got, want)
	}
	api.must(n2, http.StatusOK, http.MethodDelete, h+"/groups/g1/connections/"+carol.id, nil)

	// :execute with a filter by group and user: g1's members but alice.
	body := []byte(`[{"type":"SendMessage","message":{"target":"filtered","arguments":[1]}},{"type":"JoinGroup","group":"picked"}]`)
	res := api.must(n2, http.StatusAccepted, http.MethodPost, h+"/:execute", body, "filter='g1' in groups and userId ne 'alice'")
	if res.Header.Get("Backplane-Index") == "" {
		t.Fatalf(":execute that sent a message: no Backplane-Index: %v", res)
	}
	bob.expect("filtered")
	for _, c := range []*apiClient{alice1, alice2, carol, anon} {
		api.marker(n3, hub, c, "not-filtered-"+c.name)
	}
	api.must(n1, http.StatusOK, http.MethodHead, h+"/groups/picked", nil)
	api.must(n1, http.StatusOK, http.MethodDelete, h+"/groups/picked/connections/"+bob.id, nil)
	api.must(n3, http.StatusNotFound, http.MethodHead, h+"/groups/picked", nil)
	// A filter that selects by user, anonymous included.
	api.must(n1, http.StatusAccepted, http.MethodPost, h+"/:execute", []byte(`[{"type":"SendMessage","message":{"target":"nobody-or-carol"}}]`),
		"filter=userId eq null or userId eq 'carol'")
	carol.expect("nobody-or-carol")
	anon.expect("nobody-or-carol")
	api.marker(n2, hub, bob, "bob-not-selected")

	// :generateToken signs a token a client connects with.
	res = api.must(n2, http.StatusOK, http.MethodPost, h+"/:generateToken", nil, "userId=erin", "minutesToExpire=5")
	var tok struct{ Token string }
	if json.Unmarshal(res.Body, &tok) != nil || tok.Token == "" {
		t.Fatalf(":generateToken: %v", res)
	}
	erin := holdConn(t, n3, hub, "erin", "", tok.Token)
	api.must(n1, http.StatusOK, http.MethodHead, h+"/users/erin", nil)
	api.send(n1, h+"/users/erin/:send", "to-erin")
	erin.expect("to-erin")

	res = api.must(n3, http.StatusOK, http.MethodGet, "/api/auth/accessKey", nil)
	var key struct{ AccessKey string }
	if json.Unmarshal(res.Body, &key) != nil || key.AccessKey != clientAccessKey {
		t.Fatalf("accessKey: %v", res)
	}
	// Client results and streams (the official client's answers are in
	// restapi_invoke_test.go): erin, held by n3, gets the invocation and
	// does not answer; stream calls are accepted for her.
	res = api.must(n1, http.StatusRequestTimeout, http.MethodPost, h+"/connections/"+erin.id+"/:invoke", messageBody("ask", 1), "timeout=1")
	if res.Header.Get("x-ms-error-code") != "RequestTimeout" {
		t.Fatalf(":invoke without an answer: %v", res)
	}
	erin.expect("ask")
	api.must(n1, http.StatusAccepted, http.MethodPost, h+"/connections/"+erin.id+"/streams/s1/:send", []byte(`1`))
	api.must(n2, http.StatusAccepted, http.MethodPost, h+"/connections/"+erin.id+"/streams/s1/:complete", nil)
	api.must(n2, http.StatusOK, http.MethodDelete, h+"/connections/"+erin.id, nil)
	erin.waitClosed()
}

package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/fsm"
)

// apiURL is a versioned API URL on n with api-version v and more query.
func (n *testNode) apiURL(path, v string, query ...string) string {
	q := append([]string{"api-version=" + v}, query...)
	return n.url(path) + "?" + strings.Join(q, "&")
}

// errorDetailOf decodes an ErrorDetail answer and checks its header.
func errorDetailOf(t *testing.T, what string, res httpResult) errorDetail {
	t.Helper()
	var d errorDetail
	if err := json.Unmarshal(res.body, &d); err != nil || d.Code == "" || d.Message == "" {
		t.Fatalf("%s: body %q is not an ErrorDetail: %v", what, res.body, err)
	}
	if got := res.header.Get("x-ms-error-code"); got != d.Code {
		t.Fatalf("%s: x-ms-error-code %q, ErrorDetail code %q", what, got, d.Code)
	}
	return d
}

// wantError checks an answer's status and ErrorDetail code, and that its
// message says says.
func wantError(t *testing.T, what string, res httpResult, status int, code, says string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("%s: status %d (%s), want %d", what, res.status, res.body, status)
	}
	d := errorDetailOf(t, what, res)
	if d.Code != code || !strings.Contains(d.Message, says) {
		t.Fatalf("%s: got %+v, want code %q and a message that says %q", what, d, code, says)
	}
}

// readPathList reads a committed OpenAPI path list: "METHOD /path" lines.
func readPathList(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil || len(out) == 0 {
		t.Fatalf("read %s: %d lines, %v", file, len(out), err)
	}
	return out
}

// fillPath puts sample values into a route's wildcards.
func fillPath(p string) string {
	return strings.NewReplacer("{hub}", "chat", "{group}", "g", "{user}", "u", "{connectionId}", "c", "{streamId}", "s").Replace(p)
}

// TestRouteTableMatchesOpenAPI compares the served routes of each version
// with the path list of Azure's OpenAPI document for it, and checks that
// the mux routes each one to the versioned API (not to the catch-all
// 404), and that a route of a later version answers 400 to an earlier one.
func TestRouteTableMatchesOpenAPI(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	for _, v := range apiVersions {
		want := readPathList(t, "testdata/azure-paths-"+v+".txt")
		var got []string
		for _, rt := range n.apiRoutes() {
			if slices.Contains(rt.versions, v) {
				got = append(got, rt.method+" "+rt.path)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("version %s: served routes\n%s\nwant the OpenAPI paths\n%s", v, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, line := range want {
			method, path, _ := strings.Cut(line, " ")
			res := doHTTP(t, method, n.apiURL(fillPath(path), "1999-01-01"), nil, nil)
			if method == http.MethodHead {
				if res.status != http.StatusBadRequest || res.header.Get("x-ms-error-code") != "UnsupportedApiVersion" {
					t.Fatalf("%s: status %d, code %q, want the versioned API's 400", line, res.status, res.header.Get("x-ms-error-code"))
				}
				continue
			}
			wantError(t, line, res, http.StatusBadRequest, "UnsupportedApiVersion", "2022-06-01, 2024-12-01")
		}
	}
	latestOnly := 0
	for _, rt := range n.apiRoutes() {
		if slices.Contains(rt.versions, apiVersion20220601) || rt.method == http.MethodHead {
			continue
		}
		latestOnly++
		res := doHTTP(t, rt.method, n.apiURL(fillPath(rt.path), apiVersion20220601), nil, nil)
		wantError(t, rt.method+" "+rt.path+" with 2022-06-01", res, http.StatusBadRequest, "UnsupportedApiVersion", "it is in 2024-12-01")
	}
	if latestOnly != 7 {
		t.Fatalf("routes only in 2024-12-01: got %d, want 7", latestOnly)
	}
	// Another method on a served path is the catch-all's 404, as for v1.
	if res := doHTTP(t, http.MethodGet, n.apiURL("/api/hubs/chat/:send", apiVersion20241201), nil, nil); res.status != http.StatusNotFound {
		t.Fatalf("GET :send: status %d, want 404", res.status)
	}
}

func TestVersionedAPIErrorsAndStatuses(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	v := apiVersion20241201
	send := []byte(`{"target":"t","arguments":[1]}`)

	for _, e := range []struct {
		what, method, url string
		body              []byte
		status            int
		code, says        string
	}{
		{"no api-version", http.MethodPost, n.url("/api/hubs/chat/:send"), send, http.StatusBadRequest, "MissingApiVersion", "api-version query parameter is required"},
		{"bad hub", http.MethodPost, n.apiURL("/api/hubs/1chat/:send", v), send, http.StatusBadRequest, "BadRequest", "hub name"},
		{"bad body", http.MethodPost, n.apiURL("/api/hubs/chat/:send", v), []byte(`{"target":`), http.StatusBadRequest, "BadRequest", "malformed JSON"},
		{"too large", http.MethodPost, n.apiURL("/api/hubs/chat/:send", v), []byte(`{"target":"t","arguments":["` + strings.Repeat("x", 2<<20) + `"]}`), http.StatusRequestEntityTooLarge, "PayloadTooLarge", "too large"},
		{"not open", http.MethodDelete, n.apiURL("/api/hubs/chat/connections/nope", v), nil, http.StatusNotFound, "NotFound", "not connected"},
		{":invoke", http.MethodPost, n.apiURL("/api/hubs/chat/connections/c/:invoke", v), send, http.StatusNotFound, "NotFound", "not connected"},
		{"bad ttl", http.MethodPut, n.apiURL("/api/hubs/chat/users/u/groups/g", v, "ttl=-1"), nil, http.StatusBadRequest, "BadRequest", "ttl must be"},
		{"generateToken without a key", http.MethodPost, n.apiURL("/api/hubs/chat/:generateToken", v), nil, http.StatusBadRequest, "BadRequest", "no -access-key"},
		{"accessKey without a key", http.MethodGet, n.apiURL("/api/auth/accessKey", v), nil, http.StatusNotFound, "NotFound", "no -access-key"},
		{"filter on :send", http.MethodPost, n.apiURL("/api/hubs/chat/:send", v, "filter=true"), send, http.StatusBadRequest, "BadRequest", "filter is taken by"},
		{"bad application", http.MethodPost, n.apiURL("/api/hubs/chat/:send", v, "application=1app"), send, http.StatusBadRequest, "BadRequest", "application"},
	} {
		wantError(t, e.what, doHTTP(t, e.method, e.url, e.body, nil), e.status, e.code, e.says)
	}

	// A send answers 202 with the committed index, as v1 does.
	res := doHTTP(t, http.MethodPost, n.apiURL("/api/hubs/chat/:send", apiVersion20220601), send, nil)
	var sent struct{ Index uint64 }
	if res.status != http.StatusAccepted || json.Unmarshal(res.body, &sent) != nil || sent.Index == 0 || res.header.Get("Backplane-Index") != fmt.Sprint(sent.Index) {
		t.Fatalf("send: %d %s %v", res.status, res.body, res.header)
	}
	// Membership changes: 200 where the API says 200, 204 where it says 204.
	for _, cse := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPut, "/api/hubs/chat/users/u/groups/g", http.StatusOK},
		{http.MethodDelete, "/api/hubs/chat/users/u/groups/g", http.StatusNoContent},
		{http.MethodDelete, "/api/hubs/chat/users/u/groups", http.StatusNoContent},
		{http.MethodDelete, "/api/hubs/chat/connections/c/groups", http.StatusOK},
		{http.MethodPost, "/api/hubs/chat/:closeConnections", http.StatusNoContent},
		{http.MethodPost, "/api/hubs/chat/groups/g/:closeConnections", http.StatusNoContent},
		{http.MethodPost, "/api/hubs/chat/users/u/:closeConnections", http.StatusNoContent},
		{http.MethodHead, "/api/health", http.StatusOK},
		{http.MethodHead, "/api/hubs/chat/users/u", http.StatusNotFound},
	} {
		res := doHTTP(t, cse.method, n.apiURL(cse.path, v), nil, nil)
		if res.status != cse.want || (cse.want == http.StatusNoContent && len(res.body) != 0) {
			t.Fatalf("%s %s: status %d body %q, want %d", cse.method, cse.path, res.status, res.body, cse.want)
		}
	}
}

func TestApplicationPrefixesTheHub(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	res := doHTTP(t, http.MethodPost, n.apiURL("/api/hubs/Chat/:send", apiVersion20241201, "application=MyApp"), []byte(`{"target":"t"}`), nil)
	if res.status != http.StatusAccepted {
		t.Fatalf("send with application: %d %s", res.status, res.body)
	}
	page, err := n.fsm.ReadAll(n.fsm.LastMessage()-1, 1)
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Hub != "myapp_chat" {
		t.Fatalf("the message's hub: got %v, %v, want myapp_chat", page.Messages, err)
	}
	// The same hub without application is another hub.
	doHTTP(t, http.MethodPut, n.apiURL("/api/hubs/chat/users/u/groups/g", apiVersion20241201, "application=MyApp"), nil, nil)
	if ok, _ := n.fsm.IsMember("myapp_chat", "g", fsm.MemberUser, "u"); !ok {
		t.Fatalf("u is not in g of myapp_chat")
	}
	if ok, _ := n.fsm.IsMember("chat", "g", fsm.MemberUser, "u"); ok {
		t.Fatalf("u is in g of chat: application did not isolate the hub")
	}
	long := strings.Repeat("a", fsm.MaxHubNameLen)
	wantError(t, "too long together", doHTTP(t, http.MethodPost, n.apiURL("/api/hubs/chat/:send", apiVersion20241201, "application="+long), []byte(`{"target":"t"}`), nil),
		http.StatusBadRequest, "BadRequest", "longer than")
}

// openConn records an open connection through the log, as a SignalR
// handshake does.
func openConn(t *testing.T, n *testNode, hub, conn, user string) {
	t.Helper()
	cmd := fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: hub, ConnID: conn, UserID: user, NodeID: n.ID()})
	if _, err := n.proposer.ProposeOne(context.Background(), cmd); err != nil {
		t.Fatalf("open %s: %v", conn, err)
	}
}

func TestListGroupConnectionsPages(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	writer, reader := c.nodes[0], c.nodes[2]
	var want []groupMember
	for i := range 7 {
		id := fmt.Sprintf("c%d", i)
		user := ""
		if i%2 == 0 {
			user = fmt.Sprintf("u%d", i)
		}
		openConn(t, writer, "chat", id, user)
		if res := doHTTP(t, http.MethodPut, writer.apiURL("/api/hubs/chat/groups/g/connections/"+id, apiVersion20241201), nil, nil); res.status != http.StatusOK {
			t.Fatalf("add %s: %d %s", id, res.status, res.body)
		}
		want = append(want, groupMember{ConnectionID: id, UserID: user})
	}
	list := func(url string) (page struct {
		Value    []groupMember
		NextLink string
	}) {
		t.Helper()
		res := doHTTP(t, http.MethodGet, url, nil, nil)
		if res.status != http.StatusOK || json.Unmarshal(res.body, &page) != nil {
			t.Fatalf("GET %s: %d %s", url, res.status, res.body)
		}
		return page
	}
	follow := func(url string) (got []groupMember, pages int) {
		for url != "" {
			page := list(url)
			got = append(got, page.Value...)
			url = page.NextLink
			if pages++; pages > 10 {
				t.Fatalf("more than 10 pages")
			}
		}
		return got, pages
	}
	// Read on another node than the writes went through: the barrier makes
	// the list contain every acknowledged write.
	got, pages := follow(reader.apiURL("/api/hubs/chat/groups/g/connections", apiVersion20241201, "maxpagesize=3"))
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("all pages of 3: got %v in %d pages, want %v in 3", got, pages, want)
	}
	got, pages = follow(reader.apiURL("/api/hubs/chat/groups/g/connections", apiVersion20241201, "maxpagesize=2", "top=5"))
	if !slices.Equal(got, want[:5]) || pages != 3 {
		t.Fatalf("top 5 by 2: got %v in %d pages, want %v in 3", got, pages, want[:5])
	}
	if page := list(reader.apiURL("/api/hubs/chat/groups/g/connections", apiVersion20241201)); len(page.Value) != 7 || page.NextLink != "" {
		t.Fatalf("the default page: got %v, next %q", page.Value, page.NextLink)
	}
	if page := list(reader.apiURL("/api/hubs/chat/groups/none/connections", apiVersion20241201)); page.Value == nil || len(page.Value) != 0 {
		t.Fatalf("an empty group: got %v, want []", page.Value)
	}
	for _, q := range []string{"maxpagesize=0", "maxpagesize=201", "top=0", "continuationToken=%21%21"} {
		wantError(t, q, doHTTP(t, http.MethodGet, reader.apiURL("/api/hubs/chat/groups/g/connections", apiVersion20241201, q), nil, nil),
			http.StatusBadRequest, "BadRequest", strings.Split(q, "=")[0])
	}
}

func TestUserGroupTTLExpiresOnEveryNode(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	n := c.nodes[1]
	res := doHTTP(t, http.MethodPut, n.apiURL("/api/hubs/chat/users/u/groups/g", apiVersion20220601, "ttl=1"), nil, nil)
	if res.status != http.StatusOK {
		t.Fatalf("add with ttl: %d %s", res.status, res.body)
	}
	added := time.Now()
	for _, m := range c.nodes {
		if res := doHTTP(t, http.MethodHead, m.apiURL("/api/hubs/chat/users/u/groups/g", apiVersion20241201), nil, nil); res.status != http.StatusOK && time.Since(added) < 900*time.Millisecond {
			t.Fatalf("%s: the user is not in the group right after the add: %d", m.ID(), res.status)
		}
	}
	// Nothing else is written: the leader's tick expires it.
	waitFor(t, 10*time.Second, "the membership to expire everywhere", func() (bool, string) {
		for _, m := range c.nodes {
			if ok, _ := m.fsm.IsMember("chat", "g", fsm.MemberUser, "u"); ok {
				return false, m.ID() + " still has it"
			}
		}
		return true, ""
	})
	if time.Since(added) < time.Second {
		t.Fatalf("expired after %v, before its ttl of 1s", time.Since(added))
	}
}

func TestExecuteAndGenerateTokenWithAccessKey(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	v := apiVersion20241201
	auth := func(path string) map[string]string {
		tok := signToken(t, testAccessKey, jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Audience: jwt.ClaimStrings{n.url(path)}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))})
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	wantError(t, "no token", doHTTP(t, http.MethodPost, n.apiURL("/api/hubs/chat/:execute", v), []byte(`[]`), nil),
		http.StatusUnauthorized, "Unauthorized", "access token required")

	openConn(t, n, "chat", "a1", "alice")
	openConn(t, n, "chat", "b1", "bob")
	const execPath = "/api/hubs/chat/:execute"
	for _, bad := range []struct{ body, filter, says string }{
		{`{}`, "", "JSON array"},
		{`[{"type":"Dance"}]`, "", "unknown type"},
		{`[{"type":"SendMessage"}]`, "", "needs a message"},
		{`[{"type":"SendMessage","message":{"target":"t","arguments":{}}}]`, "", "JSON array"},
		{`[{"type":"JoinGroup"}]`, "", "group name"},
		{`[]`, "", "1 to 100 actions"},
		{`[{"type":"CloseConnection"}]`, "userId+eq", "filter"},
	} {
		q := []string{}
		if bad.filter != "" {
			q = append(q, "filter="+bad.filter)
		}
		wantError(t, bad.body, doHTTP(t, http.MethodPost, n.apiURL(execPath, v, q...), []byte(bad.body), auth(execPath)),
			http.StatusBadRequest, "BadRequest", bad.says)
	}
	body := []byte(`[{"type":"JoinGroup","group":"vip"},{"type":"SendMessage","message":{"target":"hi","arguments":[1]}}]`)
	res := doHTTP(t, http.MethodPost, n.apiURL(execPath, v, "filter=userId+eq+%27alice%27"), body, auth(execPath))
	var out struct{ Index uint64 }
	if res.status != http.StatusAccepted || json.Unmarshal(res.body, &out) != nil || out.Index == 0 {
		t.Fatalf(":execute: %d %s", res.status, res.body)
	}
	if ok, _ := n.fsm.IsMember("chat", "vip", fsm.MemberConnection, "a1"); !ok {
		t.Fatalf("a1 did not join vip")
	}
	if ok, _ := n.fsm.IsMember("chat", "vip", fsm.MemberConnection, "b1"); ok {
		t.Fatalf("b1 joined vip")
	}
	page, err := n.fsm.ReadAll(out.Index-1, 1)
	if err != nil || len(page.Messages) != 1 || !slices.Equal(page.Messages[0].Names, []string{"a1"}) {
		t.Fatalf("the sent message: %v, %v, want one to a1", page.Messages, err)
	}

	const tokPath = "/api/hubs/chat/:generateToken"
	wantError(t, "minutesToExpire=0", doHTTP(t, http.MethodPost, n.apiURL(tokPath, v, "minutesToExpire=0"), nil, auth(tokPath)),
		http.StatusBadRequest, "BadRequest", "minutesToExpire")
	res = doHTTP(t, http.MethodPost, n.apiURL(tokPath, v, "userId=alice", "minutesToExpire=5"), nil, auth(tokPath))
	var tok struct{ Token string }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &tok) != nil || tok.Token == "" {
		t.Fatalf(":generateToken: %d %s", res.status, res.body)
	}
	claims, err := n.clientKeys.parse(tok.Token)
	if err != nil {
		t.Fatalf("the node does not accept its own token: %v", err)
	}
	exp, _ := claims.GetExpirationTime()
	if claims["nameid"] != "alice" || claims[hubClaim] != "chat" || exp == nil || time.Until(exp.Time) < 4*time.Minute || time.Until(exp.Time) > 5*time.Minute {
		t.Fatalf("token claims: %v", claims)
	}
	if err := n.checkClientClaims(claims, "other"); err == nil {
		t.Fatalf("the token is good for another hub")
	}

	const keyPath = "/api/auth/accessKey"
	res = doHTTP(t, http.MethodGet, n.apiURL(keyPath, v), nil, auth(keyPath))
	var key struct{ AccessKey, KeyId string }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &key) != nil || key.AccessKey != testAccessKey || key.KeyId == "" {
		t.Fatalf("accessKey: %d %s", res.status, res.body)
	}
	// The health check needs no token.
	if res := doHTTP(t, http.MethodHead, n.apiURL("/api/health", v), nil, nil); res.status != http.StatusOK {
		t.Fatalf("health: %d", res.status)
	}
}

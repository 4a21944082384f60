package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// Clients do only what their token allows, against a real node with an
// access key (so the relay policy defaults to roles).

const clientAccessKey = "client-access-key-0123456789abcdef"

// clientToken signs an HS256 client token for user, valid for ttl, with
// the given roles.
func clientToken(t *testing.T, user string, ttl time.Duration, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"nameid": user, "exp": time.Now().Add(ttl).Unix()}
	if len(roles) > 0 {
		claims["role"] = roles
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(clientAccessKey))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// serverToken signs a REST token for n's hub path.
func serverToken(t *testing.T, n *node, path string) http.Header {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": n.baseURL() + path, "exp": time.Now().Add(time.Minute).Unix(),
	}).SignedString([]byte(clientAccessKey))
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// Mallory's token grants nothing: every relay method completes with an
// error that names the missing permission, nothing is committed, and her
// connection stays open; the admins group's history is not hers to read.
func TestAttackClientWithoutRolesCanDoNothingToOthers(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ExtraArgs: []string{"-access-key", clientAccessKey}})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	// The backend puts alice in admins and sends the group a secret.
	if res, err := do(http.MethodPut, n.baseURL()+"/api/v1/hubs/chat/groups/admins/users/alice", nil, serverToken(t, n, "/api/v1/hubs/chat/groups/admins/users/alice")); err != nil || res.Status != http.StatusOK {
		t.Fatalf("backend adds alice to admins: %v %v", res, err)
	}
	res, err := do(http.MethodPost, n.baseURL()+"/api/v1/hubs/chat/groups/admins", messageBody("secret", "for admins"), serverToken(t, n, "/api/v1/hubs/chat/groups/admins"))
	if err != nil || res.Status != http.StatusAccepted {
		t.Fatalf("backend sends to admins: %v %v", res, err)
	}
	before := mustStatus(t, n).Messages.LastMessage

	mallory := clientToken(t, "mallory", time.Minute)
	ws := signalRClient(t, n, "chat", mallory)
	for i, call := range []struct{ method, perm string }{
		{`"JoinGroup","arguments":["admins"]`, "backplane.joinLeaveGroup"},
		{`"LeaveGroup","arguments":["admins"]`, "backplane.joinLeaveGroup"},
		{`"SendToAll","arguments":["systemNotice","pwned"]`, "backplane.sendToAll"},
		{`"SendToGroup","arguments":["admins","secret","fake"]`, "backplane.sendToGroup"},
		{`"SendToUser","arguments":["alice","forceLogout"]`, "backplane.sendToUser"},
		{`"SendToConnection","arguments":["someone","forceLogout"]`, "backplane.sendToConnection"},
	} {
		errMsg := invoke(t, ws, i+1, call.method)
		if !strings.Contains(errMsg, "permission denied") || !strings.Contains(errMsg, call.perm) {
			t.Fatalf("mallory invokes %s: completion error %q, want permission denied naming %s", call.method, errMsg, call.perm)
		}
	}
	if last := mustStatus(t, n).Messages.LastMessage; last != before {
		t.Fatalf("last message %d→%d: a denied invocation was committed", before, last)
	}
	// The connection is still open and usable: a later send reaches it.
	if res, err := do(http.MethodPost, n.baseURL()+"/api/v1/hubs/chat", messageBody("stillThere"), serverToken(t, n, "/api/v1/hubs/chat")); err != nil || res.Status != http.StatusAccepted {
		t.Fatalf("backend broadcast: %v %v", res, err)
	}
	if got := readInvocationTarget(t, ws); got != "stillThere" {
		t.Fatalf("mallory's connection after the denials: got %q, want the broadcast", got)
	}
	// The retained history of admins is not readable without the role.
	q := url.Values{"after": {"0"}, "timeout": {"0"}, "group": {"admins"}, "access_token": {mallory}}
	if res, err := do(http.MethodGet, n.baseURL()+"/v1/hubs/chat/poll?"+q.Encode(), nil, nil); err != nil || res.Status != http.StatusForbidden {
		t.Fatalf("mallory polls admins' history: %v %v, want 403", res, err)
	}
	q.Set("access_token", clientToken(t, "admin-reader", time.Minute, "backplane.joinLeaveGroup.admins"))
	res, err = do(http.MethodGet, n.baseURL()+"/v1/hubs/chat/poll?"+q.Encode(), nil, nil)
	if err != nil || res.Status != http.StatusOK || !strings.Contains(string(res.Body), "for admins") {
		t.Fatalf("a reader granted admins polls its history: %v %v, want 200 with the secret", res, err)
	}
}

// Each relay permission allows its method, and a per-group one only its
// group.
func TestAttackEachRelayPermission(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ExtraArgs: []string{"-access-key", clientAccessKey}})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	for i, tc := range []struct {
		role, allowed, denied string
	}{
		{"backplane.sendToAll", `"SendToAll","arguments":["t"]`, `"SendToUser","arguments":["u","t"]`},
		{"backplane.sendToGroup", `"SendToGroup","arguments":["any","t"]`, `"SendToAll","arguments":["t"]`},
		{"backplane.sendToGroup.room1", `"SendToGroup","arguments":["room1","t"]`, `"SendToGroup","arguments":["room2","t"]`},
		{"backplane.joinLeaveGroup", `"JoinGroup","arguments":["any"]`, `"SendToGroup","arguments":["any","t"]`},
		{"backplane.joinLeaveGroup.room1", `"JoinGroup","arguments":["room1"]`, `"JoinGroup","arguments":["room2"]`},
		{"backplane.sendToUser", `"SendToUser","arguments":["u","t"]`, `"SendToConnection","arguments":["c","t"]`},
		{"backplane.sendToConnection", `"SendToConnection","arguments":["c","t"]`, `"JoinGroup","arguments":["room1"]`},
	} {
		ws := signalRClient(t, n, "chat", clientToken(t, fmt.Sprintf("user%d", i), time.Minute, tc.role))
		if errMsg := invoke(t, ws, 1, tc.allowed); errMsg != "" {
			t.Fatalf("role %s, %s: completion error %q, want success", tc.role, tc.allowed, errMsg)
		}
		if errMsg := invoke(t, ws, 2, tc.denied); !strings.Contains(errMsg, "permission denied") {
			t.Fatalf("role %s, %s: completion error %q, want permission denied", tc.role, tc.denied, errMsg)
		}
	}
}

// A native SSE stream ends when its token expires.
func TestAttackExpiredTokenEndsSSE(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ExtraArgs: []string{"-access-key", clientAccessKey}})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	tok := clientToken(t, "short", 3*time.Second)
	stream := openSSE(t, n, "chat", url.Values{"after": {"0"}, "access_token": {tok}}, nil, 30*time.Second)
	start := time.Now()
	for {
		if _, err := stream.Next(); err != nil {
			break // the node ended the stream
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("SSE stream still open 20s after its token expired")
		}
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("SSE stream ended %s after it opened, want at its token's expiry (3s)", took)
	}
	q := url.Values{"after": {"0"}, "timeout": {"0"}, "access_token": {tok}}
	waitFor(t, 10*time.Second, "the expired token to be refused", func() (bool, string) {
		res, err := do(http.MethodGet, n.baseURL()+"/v1/hubs/chat/poll?"+q.Encode(), nil, nil)
		if err != nil {
			return false, err.Error()
		}
		return res.Status == http.StatusUnauthorized, res.String()
	})
}

// signalRClient negotiates and opens a JSON SignalR WebSocket on n with a
// client token.
func signalRClient(t *testing.T, n *node, hub, token string) *websocket.Conn {
	t.Helper()
	_, connToken := negotiateSignalR(t, n, hub, http.Header{"Authorization": {"Bearer " + token}}, "a client")
	u := "ws://" + n.httpAddr + "/hubs/" + hub + "?" + url.Values{"id": {connToken}, "access_token": {token}}.Encode()
	return signalRHandshake(t, &websocket.Dialer{HandshakeTimeout: 10 * time.Second}, u, "a WebSocket on "+n.id)
}

// invoke sends invocation id with `"target":…,"arguments":…` and returns
// its completion's error ("" for success).
func invoke(t *testing.T, conn *websocket.Conn, id int, call string) string {
	t.Helper()
	msg := fmt.Sprintf(`{"type":1,"invocationId":"%d","target":%s}`+"\x1e", id, call)
	if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read the completion of %s: %v", call, err)
		}
		for _, rec := range strings.Split(strings.TrimSuffix(string(data), "\x1e"), "\x1e") {
			var m struct {
				Type         int    `json:"type"`
				InvocationID string `json:"invocationId"`
				Error        string `json:"error"`
			}
			if json.Unmarshal([]byte(rec), &m) == nil && m.Type == 3 && m.InvocationID == fmt.Sprint(id) {
				return m.Error
			}
		}
	}
	t.Fatalf("no completion for %s", call)
	return ""
}

// One anonymous client (no client tokens, so the relay policy is open)
// sends 1,000 JoinGroup calls with 3 KB names as fast as it can: with the
// default limits at most 100 commit, the rest complete with errors, the
// connection stays open, and the store grows by a bounded amount on every
// node (it grew by 17 MB before the limits).
func TestAttackJoinFloodIsBoundedOnEveryNode(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	leader := waitMembers(t, 30*time.Second, nodes...)
	sizes := map[string]int64{}
	for _, n := range nodes {
		sizes[n.id] = mustStatus(t, n).Messages.StoreFileBytes
	}
	ws := signalRClient(t, leader, "chat", "")
	const flood = 1000
	for i := range flood {
		name := fmt.Sprintf("%04d", i) + strings.Repeat("€", 1000) // 3 KB, 1,004 characters
		msg := fmt.Sprintf(`{"type":1,"invocationId":"%d","target":"JoinGroup","arguments":[%q]}`+"\x1e", i, name)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	committed, refused := 0, 0
	_ = ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	for committed+refused < flood {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d completions: %v (the connection must stay open)", committed+refused, err)
		}
		for _, rec := range strings.Split(strings.TrimSuffix(string(data), "\x1e"), "\x1e") {
			var m struct {
				Type  int    `json:"type"`
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(rec), &m) != nil || m.Type != 3 {
				continue
			}
			if m.Error == "" {
				committed++
			} else if strings.Contains(m.Error, "rate limit exceeded") || strings.Contains(m.Error, "group limit reached") {
				refused++
			} else {
				t.Fatalf("join completed with %q, want success or a limit", m.Error)
			}
		}
	}
	if committed > 100 {
		t.Fatalf("%d joins committed, want at most 100 (-max-groups-per-connection)", committed)
	}
	// 100 memberships of 3 KB names are a few copies of 300 KB in the
	// store's keys (groups, memberOf, history); bbolt pages at most double
	// that. 4 MB is far below the 17 MB the flood added without limits.
	const bound = 4 << 20
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.id+" to apply the joins", func() (bool, string) {
			st, err := status(n)
			if err != nil {
				return false, err.Error()
			}
			lst := mustStatus(t, leader)
			return st.AppliedIndex >= lst.CommitIndex, fmt.Sprintf("applied %d, leader committed %d", st.AppliedIndex, lst.CommitIndex)
		})
		grew := mustStatus(t, n).Messages.StoreFileBytes - sizes[n.id]
		t.Logf("%s: store grew by %d bytes for %d committed joins", n.id, grew, committed)
		if grew > bound {
			t.Fatalf("%s: store grew by %d bytes, want at most %d", n.id, grew, bound)
		}
	}
	if got := invoke(t, ws, flood+1, `"SendToAll","arguments":["stillHere"]`); got != "" && !strings.Contains(got, "rate limit") {
		t.Fatalf("a send after the flood: %q", got)
	}
}

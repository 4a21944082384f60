package stream

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/transport/access"
)

// accessStreams serves the native streams under a relay policy, with an
// Authorize that grants what the query asks for: roles=a,b (the
// permissions) and ttl=<duration> (the token's remaining life; none: no
// expiry). A message to group "admins" and one to "room1" are committed
// first (indexes 1 and 2).
func accessStreams(t *testing.T, policy string) (url string) {
	t.Helper()
	f := fsmtest.Open(t, fsm.Config{})
	for _, group := range []string{"admins", "room1"} {
		cmd := fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{group}, Target: "to-" + group, Arguments: []byte(`[]`)})
		f.Commit(time.Now().UnixNano(), cmd)
	}
	mux := http.NewServeMux()
	NewServer(f.FSM, Options{
		KeepAlive:   100 * time.Millisecond,
		RelayPolicy: policy,
		Authorize: func(w http.ResponseWriter, r *http.Request) (access.Grant, bool) {
			var a access.Grant
			q := r.URL.Query()
			if roles := q.Get("roles"); roles != "" {
				a.Permissions = strings.Split(roles, ",")
			}
			if ttl := q.Get("ttl"); ttl != "" {
				d, err := time.ParseDuration(ttl)
				if err != nil {
					http.Error(w, "bad ttl", http.StatusBadRequest)
					return access.Grant{}, false
				}
				a.Expires = time.Now().Add(d)
			}
			return a, true
		},
	}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

type streamAnswer struct {
	status int
	body   string // the whole body of a poll or refusal; the first line of a stream
}

// openNative requests a native stream endpoint (stream, poll or ws) and
// returns its status with the body of a refusal or poll.
func openNative(t *testing.T, base, endpoint, query string) streamAnswer {
	t.Helper()
	u := base + "/v1/hubs/chat/" + endpoint + "?" + query
	if endpoint == "ws" {
		conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(u, "http"), nil)
		if err == nil {
			_ = conn.Close()
			return streamAnswer{status: http.StatusSwitchingProtocols}
		}
		if resp == nil {
			t.Fatalf("dial %s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return streamAnswer{status: resp.StatusCode, body: string(b)}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if endpoint == "stream" && resp.StatusCode == http.StatusOK {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return streamAnswer{status: resp.StatusCode, body: line}
	}
	b, _ := io.ReadAll(resp.Body)
	return streamAnswer{status: resp.StatusCode, body: string(b)}
}

func okStatus(endpoint string) int {
	if endpoint == "ws" {
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}

// Under the roles policy a native stream follows a group only with
// backplane.joinLeaveGroup or backplane.joinLeaveGroup.<group>; the
// refusal is a 403 that names the permission. Broadcasts need nothing.
func TestNativeStreamGroupsNeedPermissionUnderRoles(t *testing.T) {
	t.Parallel()
	base := accessStreams(t, access.RelayRoles)
	for _, endpoint := range []string{"stream", "poll", "ws"} {
		for _, tc := range []struct {
			query   string
			allowed bool
		}{
			{"after=0", true},
			{"after=0&group=admins", false},
			{"after=0&group=admins&roles=backplane.sendToAll,backplane.sendToGroup,backplane.sendToGroup.admins", false},
			{"after=0&group=room1&roles=backplane.joinLeaveGroup.room1", true},
			{"after=0&group=admins&roles=backplane.joinLeaveGroup.room1", false},
			{"after=0&group=room1&group=admins&roles=backplane.joinLeaveGroup.room1", false},
			{"after=0&group=admins&roles=backplane.joinLeaveGroup", true},
		} {
			got := openNative(t, base, endpoint, tc.query+"&timeout=0")
			switch {
			case tc.allowed && got.status != okStatus(endpoint):
				t.Errorf("%s?%s: got status %d (%s), want %d", endpoint, tc.query, got.status, got.body, okStatus(endpoint))
			case !tc.allowed && (got.status != http.StatusForbidden ||
				!strings.Contains(got.body, "permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins")):
				t.Errorf("%s?%s: got status %d (%s), want 403 naming backplane.joinLeaveGroup.admins", endpoint, tc.query, got.status, got.body)
			}
		}
	}
	// A permitted poll reads the group's history, and only that group's.
	got := openNative(t, base, "poll", "after=0&timeout=0&group=room1&roles=backplane.joinLeaveGroup.room1")
	if !strings.Contains(got.body, `"target":"to-room1"`) || strings.Contains(got.body, "to-admins") {
		t.Fatalf("poll of room1: got %s, want the room1 message only", got.body)
	}
}

// Under the open policy (and without one) any stream may follow any group.
func TestNativeStreamGroupsOpenPolicy(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"", access.RelayOpen} {
		base := accessStreams(t, policy)
		got := openNative(t, base, "poll", "after=0&timeout=0&group=admins")
		if got.status != http.StatusOK || !strings.Contains(got.body, `"target":"to-admins"`) {
			t.Errorf("policy %q: poll of admins without roles: got %d %s, want 200 with the admins message", policy, got.status, got.body)
		}
		if got := openNative(t, base, "stream", "after=0&group=admins"); got.status != http.StatusOK {
			t.Errorf("policy %q: stream of admins without roles: got %d %s, want 200", policy, got.status, got.body)
		}
	}
}

// An SSE stream ends by itself when its token expires, with a comment
// saying why; an already expired token is refused with 401.
func TestSSEEndsWhenTokenExpires(t *testing.T) {
	t.Parallel()
	base := accessStreams(t, access.RelayOpen)
	start := time.Now()
	resp, err := http.Get(base + "/v1/hubs/chat/stream?after=0&ttl=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		ended <- lines
	}()
	select {
	case lines := <-ended:
		if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
			t.Errorf("stream ended after %s, want about 1s (when the token expires)", elapsed)
		}
		if len(lines) < 2 || lines[len(lines)-2] != ": access token expired" {
			t.Errorf("stream ended with %q, want the comment \": access token expired\" last", lines)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SSE stream with a 1s token still open after 10s, want it ended at the expiry")
	}
	if got := openNative(t, base, "stream", "after=0&ttl=-1s"); got.status != http.StatusUnauthorized || !strings.Contains(got.body, "expired") {
		t.Fatalf("stream with an expired token: got %d %s, want 401 saying it expired", got.status, got.body)
	}
}

// A native WebSocket stream closes with 1008 (policy violation) when its
// token expires.
func TestNativeWebSocketClosesWhenTokenExpires(t *testing.T) {
	t.Parallel()
	base := accessStreams(t, access.RelayOpen)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/v1/hubs/chat/ws?after=0&ttl=1s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	select {
	case err := <-closed:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "access token expired" {
			t.Fatalf("stream ended with %v, want close 1008 \"access token expired\"", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WebSocket stream with a 1s token still open after 10s, want it closed at the expiry")
	}
}

// A long poll waits no longer than its token is valid.
func TestPollWaitsNoLongerThanTheToken(t *testing.T) {
	t.Parallel()
	base := accessStreams(t, access.RelayOpen)
	start := time.Now()
	got := openNative(t, base, "poll", "after=2&timeout=30&ttl=500ms")
	if got.status != http.StatusOK || !strings.Contains(got.body, `"messages":[]`) {
		t.Fatalf("poll: got %d %s, want 200 with no messages", got.status, got.body)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("poll with a 500ms token answered after %s, want about 500ms", elapsed)
	}
}

package signalr2

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
)

// TestWebSocketReauthenticatesWithTheKeptHeaders: a WebSocket's send to a
// hub it did not connect to is authenticated again with what the socket
// kept of its upgrade request: with AuthHeaders, those headers only (and
// the send still passes), without, every header.
func TestWebSocketReauthenticatesWithTheKeptHeaders(t *testing.T) {
	for _, tt := range []struct {
		name        string
		authHeaders []string
		wantOnly    bool // the re-authentication sees X-Test-User alone
	}{
		{"AuthHeaders set", []string{"x-test-user"}, true},
		{"AuthHeaders nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCluster(t, fsm.DefaultRetention)
			var mu sync.Mutex
			var seen http.Header
			auth := func(r *http.Request, hubs []string) (Identity, error) {
				user := r.Header.Get("X-Test-User")
				if slices.Contains(hubs, "elsewhere") {
					mu.Lock()
					seen = r.Header.Clone()
					mu.Unlock()
					if user != "ann" {
						return Identity{}, ErrForbidden
					}
				}
				return Identity{UserID: user}, nil
			}
			_, hs := newTestServer(t, tc, Options{Authenticate: auth, AuthHeaders: tt.authHeaders})
			c := negotiate(t, hs.URL, "ann", "chat")
			ws := dialWS(t, c, "connect", nil)
			if init := readFrame(t, ws); string(init["S"]) != "1" {
				t.Fatalf("init frame %v", init)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"elsewhere","M":"SendToAll","A":["m"],"I":9}`)); err != nil {
				t.Fatal(err)
			}
			if r := readFrame(t, ws); string(r["I"]) != `"9"` || r["E"] != nil || r["R"] == nil {
				t.Fatalf("send to another hub = %v, want a message index", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen == nil {
				t.Fatal("the send to another hub was not authenticated again")
			}
			if got := seen.Get("X-Test-User"); got != "ann" {
				t.Fatalf("re-authentication saw X-Test-User %q, want ann", got)
			}
			if only := len(seen) == 1; only != tt.wantOnly {
				t.Fatalf("re-authentication saw headers %v; want X-Test-User alone: %v", seen, tt.wantOnly)
			}
		})
	}
}

// TestWebSocketInvocationEndsWithTheSocket: an invocation in progress
// when the socket ends is cancelled (its context ends): at the client's
// token's expiry, and when the server stops. (A hang-up is noticed once
// the invocation returns: the reader runs it.)
func TestWebSocketInvocationEndsWithTheSocket(t *testing.T) {
	for _, end := range []string{"token expires", "server stops"} {
		t.Run(end, func(t *testing.T) {
			tc := newTestCluster(t, fsm.DefaultRetention)
			app := newFakeApp() // its release is never closed: block ends only when cancelled
			opts := Options{Application: app, KeepAlive: time.Minute}
			if end == "token expires" {
				expires := time.Now().Add(time.Second)
				opts.Authenticate = func(r *http.Request, hubs []string) (Identity, error) {
					id, err := testAuth(r, hubs)
					id.Expires = expires
					return id, err
				}
			}
			s, hs := newTestServer(t, tc, opts)
			c := negotiate(t, hs.URL, "", "chat")
			ws := dialWS(t, c, "connect", nil)
			if init := readFrame(t, ws); string(init["S"]) != "1" {
				t.Fatalf("init frame %v", init)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"H":"chat","M":"block","A":[],"I":1}`)); err != nil {
				t.Fatal(err)
			}
			running := func() int {
				app.mu.Lock()
				defer app.mu.Unlock()
				return app.running
			}
			testkit.WaitUntil(t, 10*time.Second, "the invocation to run", func() bool { return running() == 1 })
			if end == "server stops" {
				s.Stop()
			}
			testkit.WaitUntil(t, 10*time.Second, "the invocation to be cancelled", func() bool { return running() == 0 })
			if _, calls, _ := app.snapshot(); len(calls) != 1 {
				t.Fatalf("the application saw %q, want the one invocation", calls)
			}
		})
	}
}

package node

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testAccessKey = "0123456789abcdef0123456789abcdef"

// testClientKeys is the client keys of a node whose -access-key is
// testAccessKey (and that has no public key file or JWKS).
func testClientKeys(t *testing.T) *clientKeys {
	t.Helper()
	keys, err := loadClientKeys(testAccessKey, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func signToken(t *testing.T, key string, method jwt.SigningMethod, claims jwt.RegisteredClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAdminTokenGuardsAdminButNotProbes(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, adminToken: "s3cret"})
	n := c.nodes[0]
	cases := []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"status without token", "/admin/status", nil, http.StatusUnauthorized},
		{"status with wrong token", "/admin/status", map[string]string{"Authorization": "Bearer nope"}, http.StatusForbidden},
		{"status with token", "/admin/status", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusOK},
		{"pprof without token", "/debug/pprof/", nil, http.StatusUnauthorized},
		{"healthz stays open", "/healthz", nil, http.StatusOK},
		{"readyz stays open", "/readyz", nil, http.StatusOK},
		{"metrics stay open", "/metrics", nil, http.StatusOK},
	}
	for _, tc := range cases {
		if got := doHTTP(t, http.MethodGet, n.url(tc.path), nil, tc.header).status; got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	res := doHTTP(t, http.MethodPost, n.url("/admin/join"), []byte(`{"id":"x","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`), nil)
	if res.status != http.StatusUnauthorized {
		t.Fatalf("join without token: %d, want 401", res.status)
	}
	if st, _ := n.Status(); len(st.Members) != 1 {
		t.Fatalf("a refused join changed the members: %+v", st.Members)
	}
}

func TestAccessKeyRequiresAzureStyleJWTForREST(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	url := n.url("/api/v1/hubs/chat")
	body := []byte(`{"target":"t","arguments":[1]}`)
	now := time.Now()
	good := jwt.RegisteredClaims{Audience: jwt.ClaimStrings{url}, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	wrongAud := good
	wrongAud.Audience = jwt.ClaimStrings{n.url("/api/v1/hubs/other")}
	expired := good
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour))
	noExp := good
	noExp.ExpiresAt = nil

	cases := []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong key", signToken(t, "another-key-another-key-0000", jwt.SigningMethodHS256, good), http.StatusUnauthorized},
		{"wrong audience", signToken(t, testAccessKey, jwt.SigningMethodHS256, wrongAud), http.StatusUnauthorized},
		{"expired", signToken(t, testAccessKey, jwt.SigningMethodHS256, expired), http.StatusUnauthorized},
		{"no expiry", signToken(t, testAccessKey, jwt.SigningMethodHS256, noExp), http.StatusUnauthorized},
		{"HS512 is not accepted", signToken(t, testAccessKey, jwt.SigningMethodHS512, good), http.StatusUnauthorized},
		{"valid", signToken(t, testAccessKey, jwt.SigningMethodHS256, good), http.StatusAccepted},
	}
	for _, tc := range cases {
		h := map[string]string{}
		if tc.token != "" {
			h["Authorization"] = "Bearer " + tc.token
		}
		if got := doHTTP(t, http.MethodPost, url, body, h); got.status != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, got.status, got.body, tc.want)
		}
	}
	if last := n.fsm.LastMessage(); last != 1 {
		t.Fatalf("last message %d, want 1: refused publishes must change nothing", last)
	}

	// Client streams take the token from access_token too.
	client := signToken(t, testAccessKey, jwt.SigningMethodHS256, jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))})
	if got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/chat/poll?after=0&timeout=0"), nil, nil).status; got != http.StatusUnauthorized {
		t.Fatalf("poll without token: %d, want 401", got)
	}
	if got := doHTTP(t, http.MethodGet, n.url("/v1/hubs/chat/poll?after=0&timeout=0&access_token="+client), nil, nil); got.status != http.StatusOK || !contains(string(got.body), `"index":1`) {
		t.Fatalf("poll with access_token: %d %s", got.status, got.body)
	}
}

// A web page on another origin cannot make a user's browser publish to, or
// administer, a node without an access key (a form post needs no CORS
// preflight), even from an origin in -allowed-origins (it is for /hubs and
// the native streams); curl and SDKs send no Origin and are unaffected.
func TestCrossOriginBrowserRequestsAreRefused(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, tweak: func(cfg *Config) { cfg.AllowedOrigins = []string{"https://app.example"} }})
	n := c.nodes[0]
	body := []byte(`{"target":"t","arguments":[]}`)
	cases := []struct {
		origin string
		want   int
	}{
		{"https://evil.example", http.StatusForbidden},
		{"", http.StatusAccepted},
		{"http://" + n.HTTPAddr(), http.StatusAccepted},
		{"https://app.example", http.StatusForbidden},
	}
	for _, tc := range cases {
		h := map[string]string{"Content-Type": "text/plain"}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		if got := doHTTP(t, http.MethodPost, n.url("/api/v1/hubs/chat"), body, h); got.status != tc.want {
			t.Errorf("publish with Origin %q: status %d (%s), want %d", tc.origin, got.status, got.body, tc.want)
		}
	}
	if last := n.fsm.LastMessage(); last != 2 {
		t.Fatalf("last message %d, want 2: the refused publishes must change nothing", last)
	}
	if got := doHTTP(t, http.MethodPost, n.url("/admin/remove"), []byte(`{"id":"node1"}`), map[string]string{"Origin": "https://evil.example"}); got.status != http.StatusForbidden {
		t.Fatalf("cross-origin admin call: status %d, want 403", got.status)
	}
}

package node

import (
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAzureClientHub(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		aud, hub string
		ok       bool
	}{
		{"http://127.0.0.1:8080/client/?hub=chat", "chat", true},
		{"https://127.0.0.1/client/?hub=Chat&other=1", "Chat", true},
		{"anything/client/?hub=h1", "h1", true},
		{"http://127.0.0.1:8080/client/?hub=", "", false},
		{"http://127.0.0.1:8080/client/?other=chat", "", false},
		{"http://127.0.0.1:8080/api/v1/hubs/chat", "", false},
		{"backplane-clients", "", false},
	} {
		hub, ok := azureClientHub(tc.aud)
		if hub != tc.hub || ok != tc.ok {
			t.Errorf("azureClientHub(%q): got %q %v, want %q %v", tc.aud, hub, ok, tc.hub, tc.ok)
		}
	}
}

func TestClientAccessReadsRoles(t *testing.T) {
	t.Parallel()
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name    string
		role    any
		want    []string
		wantErr bool
	}{
		{"absent", nil, nil, false},
		{"a string", "backplane.sendToAll", []string{"backplane.sendToAll"}, false},
		{"an array", []any{"backplane.sendToAll", "backplane.joinLeaveGroup.g"}, []string{"backplane.sendToAll", "backplane.joinLeaveGroup.g"}, false},
		{"a number", 7.0, nil, true},
		{"an array with a number", []any{"backplane.sendToAll", 7.0}, nil, true},
	} {
		claims := jwt.MapClaims{"exp": float64(exp)}
		if tc.role != nil {
			claims["role"] = tc.role
		}
		access, err := clientAccess(claims)
		if (err != nil) != tc.wantErr || !slices.Equal([]string(access.Permissions), tc.want) {
			t.Errorf("%s: got %q, %v, want %q (error %v)", tc.name, access.Permissions, err, tc.want, tc.wantErr)
		}
		if err == nil && access.Expires.Unix() != exp {
			t.Errorf("%s: expiry %v, want %v", tc.name, access.Expires.Unix(), exp)
		}
		if err != nil && !errors.Is(err, errUnauthorized) {
			t.Errorf("%s: got error %v, want it unauthorized", tc.name, err)
		}
	}
}

// The claim checks without a node: audience, issuer and hub binding.
func TestCheckClientClaims(t *testing.T) {
	t.Parallel()
	keys := testClientKeys(t)
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name     string
		aud, iss string // configured
		claims   jwt.MapClaims
		hub      string
		want     error // nil, errUnauthorized or errForbidden
	}{
		{"nothing configured", "", "", jwt.MapClaims{"aud": "whatever", "iss": "whoever"}, "chat", nil},
		{"audience configured", "a1", "", jwt.MapClaims{"aud": []any{"x", "a1"}}, "chat", nil},
		{"audience missing", "a1", "", jwt.MapClaims{}, "chat", errUnauthorized},
		{"audience differs in case", "a1", "", jwt.MapClaims{"aud": "A1"}, "chat", errUnauthorized},
		{"issuer configured", "", "i1", jwt.MapClaims{"iss": "i1"}, "chat", nil},
		{"issuer wrong", "", "i1", jwt.MapClaims{"iss": "i2"}, "chat", errUnauthorized},
		{"hub claim, same hub", "", "", jwt.MapClaims{"hub": "chat"}, "chat", nil},
		{"hub claim, other case", "", "", jwt.MapClaims{"hub": "CHAT"}, "chat", nil},
		{"hub claim, other hub", "", "", jwt.MapClaims{"hub": "chat"}, "other", errForbidden},
		{"hub claim not a string", "", "", jwt.MapClaims{"hub": 3.0}, "chat", errUnauthorized},
		{"Azure audience, its hub", "", "", jwt.MapClaims{"aud": "http://127.0.0.1/client/?hub=chat"}, "chat", nil},
		{"Azure audience, other hub", "", "", jwt.MapClaims{"aud": "http://127.0.0.1/client/?hub=chat"}, "other", errForbidden},
		{"Azure audience as -jwt-audience", "http://127.0.0.1/client/?hub=chat", "", jwt.MapClaims{"aud": "http://127.0.0.1/client/?hub=chat"}, "chat", nil},
		{"Azure audiences of two hubs", "", "", jwt.MapClaims{"aud": []any{"http://127.0.0.1/client/?hub=a", "http://127.0.0.1/client/?hub=b"}}, "b", nil},
		{"hub claim and Azure audience disagree", "", "", jwt.MapClaims{"hub": "a", "aud": "http://127.0.0.1/client/?hub=b"}, "b", errForbidden},
		{"hub claim and Azure audience disagree", "", "", jwt.MapClaims{"hub": "a", "aud": "http://127.0.0.1/client/?hub=b"}, "a", errForbidden},
	} {
		n := &Node{cfg: Config{JWTAudience: tc.aud, JWTIssuer: tc.iss}, clientKeys: keys}
		tc.claims["exp"] = exp
		r := httptest.NewRequest("GET", "/v1/hubs/"+tc.hub+"/poll?access_token="+sign(t, jwt.SigningMethodHS256, []byte(testAccessKey), "", tc.claims), nil)
		r.SetPathValue("hub", tc.hub)
		_, err := n.clientClaims(r)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: got error %v, want none", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: got error %v, want %v", tc.name, err, tc.want)
		}
	}
}

package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func writePEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeJWKS(t *testing.T, keys ...map[string]string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"keys": keys})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func b64(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientTokensRS256ES256AndUserClaims(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := writeJWKS(t, map[string]string{"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64(ecKey.X), "y": b64(ecKey.Y)})
	keys, err := loadClientKeys(testAccessKey, writePEM(t, &rsaKey.PublicKey), jwks)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: Config{UserClaims: []string{"nameid", "sub"}}, clientKeys: keys}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name     string
		token    string
		wantUser string
		wantErr  bool
	}{
		{"HS256 with nameid", sign(t, jwt.SigningMethodHS256, []byte(testAccessKey), "", jwt.MapClaims{"nameid": "alice", "sub": "x", "exp": exp}), "alice", false},
		{"RS256 falls back to sub", sign(t, jwt.SigningMethodRS256, rsaKey, "", jwt.MapClaims{"sub": "bob", "exp": exp}), "bob", false},
		{"ES256 by kid from the JWKS", sign(t, jwt.SigningMethodES256, ecKey, "ec1", jwt.MapClaims{"nameid": "carol", "exp": exp}), "carol", false},
		{"ES256 signed by an unknown key", sign(t, jwt.SigningMethodES256, otherEC, "ec1", jwt.MapClaims{"nameid": "eve", "exp": exp}), "", true},
		{"expired", sign(t, jwt.SigningMethodRS256, rsaKey, "", jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(-time.Hour).Unix()}), "", true},
		{"garbage", "not.a.jwt", "", true},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/hubs/chat?access_token="+tc.token, nil)
		id, err := n.authenticateClient(r)
		if (err != nil) != tc.wantErr || id.UserID != tc.wantUser {
			t.Errorf("%s: user %q err %v, want user %q error %v", tc.name, id.UserID, err, tc.wantUser, tc.wantErr)
		}
		if err == nil && id.Expires.Unix() != exp {
			t.Errorf("%s: expiry %v, want %v", tc.name, id.Expires.Unix(), exp)
		}
	}
	// The Authorization header works as well as access_token.
	r := httptest.NewRequest("POST", "/hubs/chat/negotiate", nil)
	r.Header.Set("Authorization", "Bearer "+cases[1].token)
	if id, err := n.authenticateClient(r); err != nil || id.UserID != "bob" {
		t.Fatalf("bearer header: %q %v", id.UserID, err)
	}
}

func TestLoadClientKeysRejectsBadFiles(t *testing.T) {
	if _, err := loadClientKeys("", filepath.Join(t.TempDir(), "missing.pem"), ""); err == nil {
		t.Fatal("a missing key file must fail at start")
	}
	bad := writeJWKS(t, map[string]string{"kty": "oct", "kid": "k"})
	if _, err := loadClientKeys("", "", bad); err == nil {
		t.Fatal("an unsupported JWKS key type must fail at start")
	}
	keys, err := loadClientKeys("", "", "")
	if err != nil || keys.enabled() {
		t.Fatalf("no keys configured: enabled=%v err=%v, want disabled", keys.enabled(), err)
	}
}

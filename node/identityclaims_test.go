package node

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/transport/signalr"
)

// The token's claims reach the Application (an upstream's
// X-ASRS-User-Claims): sorted by type, one per array element, numbers as
// their JSON text, Azure's asrs.u.<name> custom claims unprefixed.
func TestIdentityCarriesTheTokensClaims(t *testing.T) {
	keys := testClientKeys(t)
	n := &Node{clientKeys: keys}
	exp := time.Now().Add(time.Hour).Unix()
	tok := sign(t, jwt.SigningMethodHS256, []byte(testAccessKey), "", jwt.MapClaims{
		"nameid": "alice", "exp": exp, "role": []any{"backplane.sendToAll", "backplane.sendToGroup"},
		"asrs.u.team": "blue", "level": 3,
	})
	id, err := n.authenticateClient(httptest.NewRequest("POST", "/hubs/chat/negotiate?access_token="+tok, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []signalr.Claim{
		{Type: "team", Value: "blue"},
		{Type: "exp", Value: strconv.FormatInt(exp, 10)},
		{Type: "level", Value: "3"},
		{Type: "nameid", Value: "alice"},
		{Type: "role", Value: "backplane.sendToAll"},
		{Type: "role", Value: "backplane.sendToGroup"},
	}
	if len(id.Claims) != len(want) {
		t.Fatalf("claims %q, want %q", id.Claims, want)
	}
	for i := range want {
		if id.Claims[i] != want[i] {
			t.Fatalf("claims %q, want %q", id.Claims, want)
		}
	}
}

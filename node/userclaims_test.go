package node

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// By default the user id is read from nameid, then ASP.NET's long
// ClaimTypes.NameIdentifier claim (where .NET identity providers put it),
// then sub.
func TestDefaultUserClaimsReadTheLongNameIdentifier(t *testing.T) {
	keys := testClientKeys(t)
	n := &Node{clientKeys: keys} // no -user-claims: the defaults
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		want   string
	}{
		{"long claim before sub", jwt.MapClaims{NameIdentifierClaim: "dotnet-user", "sub": "subject", "exp": exp}, "dotnet-user"},
		{"nameid before the long claim", jwt.MapClaims{"nameid": "short", NameIdentifierClaim: "long", "exp": exp}, "short"},
		{"sub alone", jwt.MapClaims{"sub": "subject", "exp": exp}, "subject"},
	} {
		tok := sign(t, jwt.SigningMethodHS256, []byte(testAccessKey), "", tc.claims)
		id, err := n.authenticateClient(httptest.NewRequest("POST", "/hubs/chat/negotiate?access_token="+tok, nil))
		if err != nil || id.UserID != tc.want {
			t.Errorf("%s: got user %q, error %v, want %q", tc.name, id.UserID, err, tc.want)
		}
	}
}

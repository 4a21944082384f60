package node

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/transport/access"
)

// bearerToken extracts the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(h[7:])
	return tok, tok != ""
}

// requireAccess guards the server REST API: with -access-key it needs an
// HS256 JWT signed with that key whose audience is the request URL without
// its query, as Azure SignalR Service does.
func (n *Node) requireAccess(h http.HandlerFunc) http.HandlerFunc {
	if n.cfg.AccessKey == "" {
		return noBrowsers(h)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		if !ok {
			writeError(w, r, fmt.Errorf("%w: access token required (Authorization: Bearer <JWT signed with the access key>)", errUnauthorized))
			return
		}
		claims, err := n.parseAccessToken(tok)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if !audienceMatches(claims.Audience, r) {
			writeError(w, r, fmt.Errorf("%w: access token audience %v does not match %s", errUnauthorized, []string(claims.Audience), requestURL(r, "http")))
			return
		}
		h(w, r)
	}
}

// authorizeClient checks a native stream's token when client tokens are
// configured (see clientClaims) and returns what it grants: its expiry and
// roles. It answers 401 (or 403 for a token bound to another hub) itself.
func (n *Node) authorizeClient(w http.ResponseWriter, r *http.Request) (access.Grant, bool) {
	claims, err := n.clientClaims(r)
	var grant access.Grant
	if err == nil && claims != nil {
		grant, err = clientAccess(claims)
	}
	if err != nil {
		writeError(w, r, err)
		return access.Grant{}, false
	}
	return grant, true
}

// clientClaims verifies a client connection's token, when client tokens
// are configured (-access-key, -jwt-public-key or -jwks-file): from the
// Authorization header or the access_token query parameter (browsers cannot
// set headers on EventSource and WebSocket). Beyond the signature and
// expiry it checks -jwt-audience, -jwt-issuer and the token's binding to
// the request's hub (checkClientClaims). Nil claims: tokens are off.
func (n *Node) clientClaims(r *http.Request) (jwt.MapClaims, error) {
	if !n.clientKeys.enabled() {
		return nil, nil
	}
	tok, ok := bearerToken(r)
	if !ok {
		tok = r.URL.Query().Get("access_token")
	}
	if tok == "" {
		return nil, fmt.Errorf("%w: access token required (Authorization: Bearer or access_token=)", errUnauthorized)
	}
	claims, err := n.clientKeys.parse(tok)
	if err != nil {
		return nil, err
	}
	if err := n.checkClientClaims(claims, r.PathValue("hub")); err != nil {
		return nil, err
	}
	return claims, nil
}

// accessTokenLeeway tolerates clock skew between token issuers and nodes.
const accessTokenLeeway = 30 * time.Second

// accessTokenParser verifies REST tokens: HS256 only, as Azure does.
var accessTokenParser = jwt.NewParser(
	jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
	jwt.WithExpirationRequired(),
	jwt.WithLeeway(accessTokenLeeway),
)

func (n *Node) parseAccessToken(tok string) (*jwt.RegisteredClaims, error) {
	claims := &jwt.RegisteredClaims{}
	key := []byte(n.cfg.AccessKey)
	if _, err := accessTokenParser.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		return nil, fmt.Errorf("%w: invalid access token: %v", errUnauthorized, err)
	}
	return claims, nil
}

// requestURL is the request's URL without query, as a client addressed it.
func requestURL(r *http.Request, scheme string) string {
	return scheme + "://" + r.Host + clientEscapedPath(r)
}

func audienceMatches(aud jwt.ClaimStrings, r *http.Request) bool {
	for _, scheme := range []string{"http", "https"} {
		want := requestURL(r, scheme)
		if slices.ContainsFunc(aud, func(a string) bool { return strings.TrimSuffix(a, "/") == strings.TrimSuffix(want, "/") }) {
			return true
		}
	}
	return false
}

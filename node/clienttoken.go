package node

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/transport/access"
)

// The claims of a client token beyond its signature and expiry (those are
// clientKeys.parse's): audience and issuer when configured, the hub it is
// bound to, and the roles it grants.

// Claims a client token may carry.
const (
	// hubClaim binds a token to one hub.
	hubClaim = "hub"
	// roleClaim holds the permissions (access.Perm*): a string or an
	// array of strings, as Azure Web PubSub's role claim.
	roleClaim = "role"
)

// checkClientClaims checks what the token says against the configuration
// and the request's hub: -jwt-audience must be among its audiences,
// -jwt-issuer must be its issuer (401 otherwise), and a token bound to a
// hub may be used on that hub only (403).
func (n *Node) checkClientClaims(claims jwt.MapClaims, hub string) error {
	aud, err := claims.GetAudience()
	if err != nil {
		return fmt.Errorf("%w: invalid access token: %v", errUnauthorized, err)
	}
	if want := n.cfg.JWTAudience; want != "" && !slices.Contains(aud, want) {
		return fmt.Errorf("%w: invalid access token: its audience %q does not include %q", errUnauthorized, []string(aud), want)
	}
	if want := n.cfg.JWTIssuer; want != "" {
		iss, err := claims.GetIssuer()
		if err != nil {
			return fmt.Errorf("%w: invalid access token: %v", errUnauthorized, err)
		}
		if iss != want {
			return fmt.Errorf("%w: invalid access token: its issuer %q is not %q", errUnauthorized, iss, want)
		}
	}
	return checkHubBinding(claims, aud, hub)
}

// checkHubBinding refuses a token bound to other hubs than the request's
// (403): its hub claim must name the hub, and when some of its audiences
// are Azure SignalR client audiences, <endpoint>/client/?hub=<hub>, one of
// them must name it. Hubs match case-insensitively, as in Azure. A token
// with neither is good for every hub.
func checkHubBinding(claims jwt.MapClaims, aud jwt.ClaimStrings, hub string) error {
	if v, ok := claims[hubClaim]; ok {
		h, isString := v.(string)
		if !isString || h == "" {
			return fmt.Errorf("%w: invalid access token: the %q claim must be a non-empty string", errUnauthorized, hubClaim)
		}
		if !strings.EqualFold(h, hub) {
			return fmt.Errorf("%w: the access token is bound to hub %q and cannot be used on hub %q", errForbidden, h, hub)
		}
	}
	var hubs []string
	for _, a := range aud {
		if h, ok := azureClientHub(a); ok {
			hubs = append(hubs, h)
		}
	}
	if len(hubs) > 0 && !slices.ContainsFunc(hubs, func(h string) bool { return strings.EqualFold(h, hub) }) {
		what := fmt.Sprintf("hub %q", hubs[0])
		if len(hubs) > 1 {
			what = fmt.Sprintf("hubs %q", hubs)
		}
		return fmt.Errorf("%w: the access token's audience binds it to %s and it cannot be used on hub %q", errForbidden, what, hub)
	}
	return nil
}

// azureClientHub reads the hub of an Azure-form client audience,
// "<endpoint>/client/?hub=<hub>" (the endpoint may be anything).
func azureClientHub(aud string) (string, bool) {
	i := strings.Index(aud, "/client/?")
	if i < 0 {
		return "", false
	}
	q, err := url.ParseQuery(aud[i+len("/client/?"):])
	if err != nil || q.Get("hub") == "" {
		return "", false
	}
	return q.Get("hub"), true
}

// clientAccess reads what a verified token grants: its expiry and its
// roles (a role claim that is neither a string nor an array of strings
// makes the token invalid).
func clientAccess(claims jwt.MapClaims) (access.Grant, error) {
	var grant access.Grant
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		grant.Expires = exp.Time
	}
	switch v := claims[roleClaim].(type) {
	case nil:
	case string:
		grant.Permissions = access.Permissions{v}
	case []any:
		for _, r := range v {
			s, ok := r.(string)
			if !ok {
				return access.Grant{}, fmt.Errorf("%w: invalid access token: the %q claim must be a string or an array of strings", errUnauthorized, roleClaim)
			}
			grant.Permissions = append(grant.Permissions, s)
		}
	default:
		return access.Grant{}, fmt.Errorf("%w: invalid access token: the %q claim must be a string or an array of strings", errUnauthorized, roleClaim)
	}
	return grant, nil
}

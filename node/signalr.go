package node

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/peer"
	"github.com/backplane/backplane/transport/signalr"
)

// NameIdentifierClaim is ASP.NET's ClaimTypes.NameIdentifier, the claim
// .NET identity providers put the user id in.
const NameIdentifierClaim = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"

// DefaultUserClaims are the JWT claims a connection's user id is taken
// from, in order: ClaimTypes.NameIdentifier's short name, its long name,
// sub (which ASP.NET's JWT handler maps to it), then asrs.s.uid, where
// Azure SignalR's client tokens (Azure Functions' negotiate binding, the
// Management SDK) carry it.
var DefaultUserClaims = []string{"nameid", NameIdentifierClaim, "sub", AzureUserIDClaim}

// AzureUserIDClaim is the claim Azure SignalR Service's client tokens
// carry the user id in.
const AzureUserIDClaim = "asrs.s.uid"

// authenticateClient identifies a SignalR client. Without client tokens
// configured every client is anonymous; otherwise it needs a valid token
// (see clientClaims), its user id comes from the first present of the
// user claims, and its permissions from the role claim.
func (n *Node) authenticateClient(r *http.Request) (signalr.Identity, error) {
	claims, err := n.clientClaims(r)
	if err != nil || claims == nil {
		return signalr.Identity{}, err
	}
	id := signalr.Identity{UserID: n.userIDOf(claims)}
	access, err := clientAccess(claims)
	if err != nil {
		return signalr.Identity{}, err
	}
	id.Expires, id.Permissions = access.Expires, access.Permissions
	// The claims for the Application (an upstream's X-ASRS-User-Claims);
	// Azure's SDK carries custom claims as asrs.u.<name>.
	id.Claims = tokenClaims(claims, "asrs.u.")
	if id.UserID != "" {
		if err := fsm.ValidateName("user", id.UserID); err != nil {
			return signalr.Identity{}, err
		}
	}
	return id, nil
}

// userIDOf is the client's user id: the first present of the configured
// user claims (DefaultUserClaims if none are), or "" for none.
func (n *Node) userIDOf(claims jwt.MapClaims) string {
	userClaims := n.cfg.UserClaims
	if len(userClaims) == 0 {
		userClaims = DefaultUserClaims
	}
	for _, name := range userClaims {
		if v, ok := claims[name].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func (n *Node) newHubServer() *signalr.Server {
	return signalr.NewServer(hubCluster{n}, signalr.Options{
		Logger:         n.cfg.Logger.With("component", "signalr"),
		Authenticate:   n.authenticateClient,
		AllowedOrigins: n.cfg.AllowedOrigins,
		RelayDisabled:  n.cfg.RelayDisabledHubs,
		Application:    n.cfg.Application,
		RelayPolicy:    n.cfg.RelayPolicy,
		MaxMessageSize: n.cfg.MaxMessageSize,

		CloseOnAuthenticationExpiration: n.cfg.CloseOnTokenExpiry,
		WriteDeadline:                   DefaultSignalRWriteDeadline,
		ProposeTimeout:                  DefaultSignalRProposeTimeout,
		ObserveDispatch:                 func(d time.Duration) { n.delays.dispatch.Observe(d.Seconds()) },
		Peers:                           memberPeers{n.peers},

		// Per-client limits; an address's count is shared with the
		// native streams (n.streams is made first).
		MaxGroupsPerConnection: n.cfg.MaxGroupsPerConnection,
		InvocationRate:         n.cfg.InvocationRate,
		InvocationBurst:        n.cfg.InvocationBurst,
		ConnLimit:              n.streams.ConnLimit(),
	})
}

// memberPeers gives the SignalR layer the node's peer client.
type memberPeers struct{ *peer.Auth }

// FromMember: r was signed by a member, or members do not authenticate
// each other (then a relayed request cannot be told from a client's).
func (p memberPeers) FromMember(r *http.Request) bool {
	err := p.Verify(r)
	return err == nil || errors.Is(err, peer.ErrNoPeerAuth)
}

func (memberPeers) IsDialError(err error) bool { return peer.IsDialError(err) }

// tokenClaims lists a token's claims for the Application, sorted by claim
// type (a decoded token keeps no order): an array gives one claim per
// element, other values their JSON text. A type that starts with
// customPrefix is given without it.
func tokenClaims(claims jwt.MapClaims, customPrefix string) []signalr.Claim {
	types := make([]string, 0, len(claims))
	for k := range claims {
		types = append(types, k)
	}
	sort.Strings(types)
	var out []signalr.Claim
	for _, k := range types {
		vals, isList := claims[k].([]any)
		if !isList {
			vals = []any{claims[k]}
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				b, err := json.Marshal(v)
				if err != nil {
					continue
				}
				s = string(b)
			}
			out = append(out, signalr.Claim{Type: strings.TrimPrefix(k, customPrefix), Value: s})
		}
	}
	return out
}

package signalr2

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/signalr"
)

// Cluster is what the SignalR 2 endpoint needs from the node, in its own
// words; the node turns the writes into log commands.
type Cluster interface {
	// NodeID is this node's id.
	NodeID() string
	// Read returns at most limit messages for f after the cursor (the
	// state machine's cursor read).
	Read(f *fsm.Filter, after uint64, limit int) (fsm.Page, error)
	// Changes returns a channel closed at the next change in the store of
	// any of watches (a connection watches its hubs' messages, its records
	// and groups, its user's groups; see connWatches), and a stop to call
	// once the caller no longer waits.
	Changes(watches ...fsm.Watch) (changed <-chan struct{}, stop func())
	// AfterChange calls fn, on a goroutine of its own, at the next change
	// of any of watches; stop cancels the call and reports whether it did.
	// A WebSocket waits with it, without a goroutine.
	AfterChange(watches []fsm.Watch, fn func()) (stop func() bool)
	// LastMessage is the highest message index applied so far.
	LastMessage() uint64
	// NotReady says why this node must not serve reads now: it has not
	// caught up with the log ("" once it may).
	NotReady() string
	// Groups lists the groups of hub the connection is in, directly or
	// through its user (userID "" for none).
	Groups(hub, connID, userID string) ([]string, error)
	// Holder returns the node that holds the connection's record in hub,
	// and whether it is open.
	Holder(hub, connID string) (node string, open bool, err error)
	// Open records the connection in each of its hubs with this node as
	// its holder (replacing an earlier holder), and adds it to the groups
	// in rejoin (per hub), in one proposal.
	Open(ctx context.Context, o Opening) error
	// Close closes the connection's records. With holderOnly the close
	// names this node, and applies only while this node holds the
	// connection.
	Close(ctx context.Context, connID string, hubs []string, holderOnly bool, reason string) error
	// CheckRelay checks a relay invocation before it is proposed.
	CheckRelay(hub, connID string, r Relay) error
	// Relay commits a relay invocation and returns the message index of a
	// send (0 for a group change). A rejected command's error wraps
	// ErrRejected.
	Relay(ctx context.Context, hub, connID string, r Relay) (uint64, error)
	// Touch tells node holder that these connections, which it holds,
	// were served here just now. IsUnreachable tells an error that
	// means the holder could not be reached at all.
	Touch(ctx context.Context, holder string, connIDs []string) error
	// IsUnreachable reports whether err from Touch means the holder is
	// down (nothing reached it).
	IsUnreachable(err error) bool
}

// Opening is a connection to record on this node.
type Opening struct {
	ConnID string
	UserID string
	Hubs   []string
	// Rejoin lists, per hub, the groups to add the connection to (from
	// a verified groups token, when the record was gone).
	Rejoin map[string][]string
}

// RelayOp is a relay method.
type RelayOp int

// The relay methods.
const (
	JoinGroup RelayOp = iota + 1
	LeaveGroup
	SendToAll
	SendToGroup
	SendToUser
	SendToConnection
)

// Relay is one relay invocation: a group change of the calling connection
// (Name is the group) or a send (Name is the group, user or connection;
// empty for SendToAll) of Target(Arguments...).
type Relay struct {
	Op        RelayOp
	Name      string
	Target    string
	Arguments []byte // a JSON array
}

// Identity is who a request comes from.
type Identity struct {
	// UserID is "" for an anonymous client.
	UserID string
	// Expires is when the client's token expires (zero: never); streams
	// end then.
	Expires time.Time
	// Permissions are its token's roles (they matter under the roles
	// relay policy).
	Permissions access.Permissions
	// Claims are the token's claims, for the Application
	// (signalr.ConnInfo.Claims).
	Claims []signalr.Claim
}

// Errors the node's functions return, which the endpoint maps to statuses.
var (
	// ErrUnauthorized (401): no valid client token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden (403): a token that may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrRejected: the state machine rejected a relay command.
	ErrRejected = errors.New("rejected")
)

// Authenticator identifies the client of a request to the given hubs
// (lower-case names). Its error wraps ErrUnauthorized or ErrForbidden.
type Authenticator func(r *http.Request, hubs []string) (Identity, error)

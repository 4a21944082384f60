package signalr

import (
	"context"
	"errors"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
)

// Cluster is what the SignalR layer needs from its node, in SignalR's
// words: it reads the replicated state, and it asks for changes (open,
// close, take over, relay, checkpoint, expire) without knowing how they
// are written to the log.
//
// A change is committed through the log before its method returns. An
// error that wraps ErrRejected means the cluster refused the change and
// nothing changed; any other error leaves the outcome unknown.
type Cluster interface {
	// NodeID is this node's id.
	NodeID() string
	// NodeURL is the HTTP base URL of a member, if known.
	NodeURL(id string) (string, bool)
	// Ready reports whether this node knows a leader and has applied all
	// it knows to be committed.
	Ready() bool

	// ReadAll returns committed messages of every hub after a cursor.
	ReadAll(after uint64, limit int) (fsm.Page, error)
	// Changed is closed at the next applied change.
	Changed() <-chan struct{}
	// AfterChange calls fn, on a goroutine of its own, at the next applied
	// change of any of watches; stop cancels the call and reports whether
	// it did. A stateful connection's feed waits with it (its hub's
	// messages and its own state), without a goroutine.
	AfterChange(watches []fsm.Watch, fn func()) (stop func() bool)
	// LastMessage is the highest message index applied here.
	LastMessage() uint64
	// AppliedIndex is the last Raft index applied to this node's store.
	AppliedIndex() uint64
	// FeatureLevel is the cluster's feature level (fsm.Level): below 1,
	// an Application's values, stream items and calls to a client cannot
	// be committed to a stateful connection's stream yet.
	FeatureLevel() uint64
	// GroupMembers lists a group's members.
	GroupMembers(hub, group string) ([]fsm.GroupMember, error)
	// ConnectionHolder reports whether the replicated state records a
	// connection as open, and which node holds it.
	ConnectionHolder(hub, conn string) (nodeID string, open bool, err error)
	// StatefulByToken finds a stateful connection by its token's hash.
	StatefulByToken(tokenHash []byte) (fsm.StatefulConnection, bool, error)
	// ReadConnection reads a stateful connection's stream after a position.
	ReadConnection(hub, conn string, after fsm.Position, limit int) ([]fsm.ConnEvent, bool, error)

	// OpenConnection records a connection as open and held by this node,
	// and returns the Raft index of the entry that recorded it.
	OpenConnection(ctx context.Context, o Opening) (entry uint64, err error)
	// TakeOver moves a stateful connection (o.Stateful is implied) to
	// this node, and returns the Raft index of the entry that moved it.
	TakeOver(ctx context.Context, o Opening) (entry uint64, err error)
	// CloseConnection records that a connection this node holds closed;
	// it is rejected if another node holds it now.
	CloseConnection(ctx context.Context, hub, connID, reason string) error
	// ExpireConnections expires the connections the replicated state
	// records on a node, except those keep claims (it is asked after the
	// list is read), and returns how many it expired. An expiry the
	// cluster rejects (the connection closed meanwhile) is no error.
	ExpireConnections(ctx context.Context, nodeID, reason string, keep func(hub, connID string) bool) (int, error)

	// CheckRelay says why the cluster would refuse a relay invocation of
	// a connection, before it is proposed; nil if it would not.
	CheckRelay(hub, connID string, r Relay) error
	// Relay commits a connection's relay invocations in order, in one
	// proposal, and returns the outcome of each. Its error is the
	// proposal's: then the outcome of every one is unknown.
	Relay(ctx context.Context, hub, connID string, relays []Relay) ([]RelayOutcome, error)
	// RecordInvocation commits a stateful connection's invocation with its
	// client sequence number; the cluster applies it once and records its
	// completion in the connection's stream. It returns the Raft index of
	// the entry that carried it, also when the error is a rejection.
	RecordInvocation(ctx context.Context, inv Invocation) (entry uint64, err error)
	// Checkpoint records, in one change naming this node, the positions
	// the clients of this node's stateful connections acknowledged.
	Checkpoint(ctx context.Context, cps []Checkpoint) error
}

// ErrRejected marks a change the cluster refused: nothing changed. A
// Cluster's errors wrap it for every rejection, keeping the reason's text.
var ErrRejected = errors.New("rejected by the cluster")

// Opening is a connection to record as held by this node.
type Opening struct {
	Hub, ConnID, UserID string
	// Stateful marks a connection that can resume on any node (stateful
	// reconnect); Protocol and TokenHash then let any node serve it.
	Stateful  bool
	Protocol  string // the hub protocol the client speaks
	TokenHash []byte // SHA-256 of the connection token
}

// RelayOp is what a relay invocation asks for.
type RelayOp uint8

// Relay operations, one per relay hub method.
const (
	SendToAll RelayOp = iota + 1
	SendToGroup
	SendToUser
	SendToConnection
	JoinGroup
	LeaveGroup
)

// Relay is a relay invocation of a connection: a send to an audience of
// the connection's hub, or the connection joining or leaving a group.
type Relay struct {
	Op RelayOp
	// Name is the group (SendToGroup, JoinGroup, LeaveGroup), user or
	// connection the invocation names; empty for SendToAll.
	Name string
	// Target is the method a send invokes on its clients, Arguments its
	// arguments as a JSON array.
	Target    string
	Arguments []byte
	// MsgpackArguments is set when the sender uses MessagePack: its
	// arguments as the MessagePack array it sent (Arguments is then their
	// JSON form, see hubproto.MsgpackToJSONForm). MessagePack recipients
	// get these bytes unchanged.
	MsgpackArguments []byte
}

// RelayOutcome is what became of one committed relay invocation.
type RelayOutcome struct {
	Index uint64 // the message index of a send; 0 for a group change
	Err   error  // the cluster rejected it (wraps ErrRejected)
}

// Invocation is a stateful connection's invocation: ClientSeq numbers it
// among the client's trackable messages, so a resent duplicate is applied
// once. Relay is what it asks for; nil when it was refused before reaching
// the cluster, with Error saying why. InvocationID is empty for
// fire-and-forget.
type Invocation struct {
	Hub, ConnID  string
	InvocationID string
	ClientSeq    uint64
	Relay        *Relay
	Error        string
	// Value is the Application's result (HasValue), recorded as the
	// invocation's completion. With Item, the command is instead one item
	// of the stream InvocationID; with StreamEnd, that stream's end (with
	// Error if it failed). Neither is numbered: ClientSeq is 0.
	Value     hubproto.RawValue
	HasValue  bool
	Item      bool
	StreamEnd bool
	// Call: the command is an invocation of Target the server sends to
	// the client (a client result), Value its arguments as an array; the
	// client answers InvocationID. Not numbered either.
	Call   bool
	Target string
	// StreamStart: the client's stream invocation InvocationID started
	// (numbered; no completion yet). If the connection resumes on another
	// node before the stream's end, the cluster ends it with an error.
	StreamStart bool
}

// Checkpoint says a stateful connection's client acknowledged its stream
// up to event Seq, at Pos.
type Checkpoint struct {
	Hub, ConnID string
	Seq         uint64
	Pos         fsm.Position
}

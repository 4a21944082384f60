package signalr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/backplane/backplane/transport/hubproto"
)

// Application is hub logic an application supplies beyond the relay
// methods: an upstream webhook (package upstream) or hubs written in Go
// (package hubs). The SignalR layer calls it; it never writes the log
// itself — what it sends to clients goes through the node like any send.
//
// Its methods are called from the node's own goroutines and must be safe
// for concurrent use.
type Application interface {
	// Connect is asked before a connection is accepted: at its negotiate,
	// or at its WebSocket upgrade when the client skips negotiation. An
	// error refuses the connection; a *Refusal answers its HTTP status (a
	// 401 or 403 from the application), any other error 500. The
	// Admission may set the connection's user id and the groups it joins
	// once open.
	Connect(ctx context.Context, c *ConnInfo) (Admission, error)
	// Connected is told once the connection's open is committed, on the
	// node that opened it. It must not block for long: the connection's
	// first messages wait for it.
	Connected(c ConnInfo)
	// Disconnected is told once a connection's close is committed, by the
	// node that committed it: its holder, or the node that expired a dead
	// holder's connections (then ConnInfo has only Hub, ID and UserID).
	// errMsg is empty after a clean close.
	Disconnected(c ConnInfo, errMsg string)
	// Invoke runs a client's invocation of a method that is not a relay
	// method it may call, and returns its completion. A connection's
	// invocations come in the order the client sent them, one at a time
	// (ASP.NET's MaximumParallelInvocationsPerClient of 1); a stream
	// invocation returns when its stream ends. A completion with
	// Unknown set answers "Unknown hub method". On a stateful connection
	// the completion (and each stream item) is committed to the log, so
	// that it reaches the client exactly once even if it resumes on
	// another node meanwhile; the application may then see an invocation
	// twice (a client resends what the dead node did not commit).
	Invoke(ctx context.Context, call *Call) Completion
}

// ConnInfo describes a connection to the Application.
type ConnInfo struct {
	Hub    string // canonical (lower-case) hub name
	ID     string // the public connection id
	UserID string
	// Claims are the access token's claims, in the token's order, with
	// values as strings (arrays give one claim per element).
	Claims []Claim
	// Query is the query string of the client's negotiate (or WebSocket
	// request when it skips negotiation), without the access token.
	Query url.Values
	// Protocol is the hub protocol's name ("json" or "messagepack"); empty
	// before the handshake (in Connect).
	Protocol string
	// Stateful is set when the connection uses stateful reconnect.
	Stateful bool
}

// Claim is one claim of an access token.
type Claim struct{ Type, Value string }

// Admission is an Application's answer to Connect.
type Admission struct {
	// UserID, if set, replaces the user id the access token gave.
	UserID string
	// Groups are joined as soon as the connection is open, before the
	// client can be told anything.
	Groups []string
}

// Refusal is an Application's refusal of a connection with an HTTP status.
type Refusal struct {
	Status  int // 401 or 403 usually
	Message string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("connection refused by the application (%d): %s", r.Status, r.Message)
}

// refusalStatus is the HTTP status a Connect error answers.
func refusalStatus(err error) (int, string) {
	var r *Refusal
	if errors.As(err, &r) && r.Status >= 400 && r.Status < 600 {
		return r.Status, r.Message
	}
	return http.StatusInternalServerError, "the application could not accept the connection"
}

// Call is one client invocation handed to the Application.
type Call struct {
	Conn ConnInfo
	// Message is the Invocation or StreamInvocation as the client sent it:
	// its Arguments (and the Result it expects) are in the client's
	// protocol, Protocol.
	Message  *hubproto.Message
	Protocol hubproto.Protocol
	// SendItem sends one item of a stream invocation's stream (in the
	// client's protocol); an error means the client is gone or cancelled
	// the stream (then the Application should stop and return).
	SendItem func(item hubproto.RawValue) error
	// Upload returns the items the client streams for one of
	// Message.StreamIDs; the channel closes when the client completes the
	// stream (err then says why, if it failed) or the connection ends.
	Upload func(streamID string) (items <-chan hubproto.RawValue, err func() error)
	// Cancelled is closed when the client cancels a stream invocation or
	// the connection ends. ctx given to Invoke ends then too.
	Cancelled <-chan struct{}
}

// Completion is how an invocation ended: a result (in the caller's
// protocol, when HasResult), an error, or an unknown method.
type Completion struct {
	Result    hubproto.RawValue
	HasResult bool
	Error     string
	Unknown   bool
}

// MethodLister is implemented by an Application that knows its hubs'
// methods ahead of time (Go hubs): the SignalR 2 proxy script at
// /signalr/hubs lists them. An upstream webhook does not.
type MethodLister interface {
	// Hubs lists the hubs with methods, Methods a hub's method names as
	// declared.
	Hubs() []string
	Methods(hub string) []string
}

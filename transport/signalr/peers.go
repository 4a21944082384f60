package signalr

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Peers is how the SignalR layer reaches the node that holds a connection
// and recognises a request another member relayed to it. The node gives
// its peer client (mutual TLS or the cluster key); nil means plain HTTP
// between members that do not authenticate each other.
type Peers interface {
	// Client sends relayed requests to members.
	Client() *http.Client
	// Sign adds this member's credentials to a request for another member
	// (body nil: a streamed body, left out of the signature).
	Sign(req *http.Request, body []byte)
	// DialHTTP opens a raw connection to a member's HTTP port, for a
	// WebSocket tunnel.
	DialHTTP(ctx context.Context, hostport string) (net.Conn, error)
	// FromMember reports whether r was relayed by an authenticated member
	// (always true when members do not authenticate each other).
	FromMember(r *http.Request) bool
	// IsDialError reports whether err means nothing was sent: the member
	// could not be reached.
	IsDialError(err error) bool
}

// relayed reports whether r was relayed here by another member, which
// then expects this node to serve it rather than relay it again. A client
// that forges the header is not believed: its request is handled as any
// client's.
func (s *Server) relayed(r *http.Request) bool {
	return r.Header.Get(forwardedHeader) != "" && s.peers.FromMember(r)
}

// plainPeers is the Peers of members that do not authenticate each other:
// plain HTTP and TCP, with a short dial timeout so a resume whose holder
// vanished is taken over instead of waiting out a long dial.
type plainPeers struct{ client *http.Client }

func newPlainPeers() plainPeers {
	return plainPeers{client: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}}
}

func (p plainPeers) Client() *http.Client        { return p.client }
func (plainPeers) Sign(*http.Request, []byte)    {}
func (plainPeers) FromMember(*http.Request) bool { return true }
func (plainPeers) DialHTTP(ctx context.Context, hostport string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, "tcp", hostport)
}

func (plainPeers) IsDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

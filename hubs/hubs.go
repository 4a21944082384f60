// Package hubs runs a Backplane node inside a Go application and hosts
// hubs written in Go, as ASP.NET Core SignalR hubs: exported methods a
// client invokes with typed arguments, OnConnected and OnDisconnected,
// Clients and Groups whose sends are committed to the replicated log,
// server-to-client and upload streams, and client results.
package hubs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/backplane/backplane/node"
	"github.com/backplane/backplane/transport/signalr"
)

// Config configures a Server.
type Config struct {
	// Node configures the embedded node (ID, data dir, addresses, join).
	// Its Application is set by New.
	Node node.Config
	// DetailedErrors sends any error's text to the client, as ASP.NET's
	// EnableDetailedErrors; otherwise only a *HubError's text reaches it.
	DetailedErrors bool
	// OnConnecting, if set, is asked before a connection to any hub is
	// accepted (at its negotiate, or its WebSocket request when it skips
	// negotiation): it may refuse it (a *signalr.Refusal sets the HTTP
	// status; any other error answers 500), set its user id (ASP.NET's
	// IUserIdProvider) and name groups it joins before it can send
	// anything. Without it every connection is admitted under the user id
	// of its access token, if any.
	OnConnecting func(ctx context.Context, c *signalr.ConnInfo) (signalr.Admission, error)
}

// Server is an embedded Backplane node hosting Go hubs.
type Server struct {
	node       *node.Node
	log        *slog.Logger
	detail     bool
	connecting func(ctx context.Context, c *signalr.ConnInfo) (signalr.Admission, error)

	mu   sync.RWMutex
	hubs map[string]*hubType // by lower-case name
}

// New creates the node. Register hubs before Run.
func New(cfg Config) (*Server, error) {
	s := &Server{hubs: map[string]*hubType{}, detail: cfg.DetailedErrors, connecting: cfg.OnConnecting}
	cfg.Node.Application = s
	n, err := node.New(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("hubs: start the node: %w", err)
	}
	s.node = n
	s.log = cfg.Node.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// newDetached makes a Server with no node, for unit tests of dispatch.
func newDetached(detail bool) *Server {
	return &Server{hubs: map[string]*hubType{}, detail: detail, log: slog.Default()}
}

// Node is the embedded node.
func (s *Server) Node() *node.Node { return s.node }

// Register hosts hub (a pointer to a struct, usually) under name: its
// exported methods become hub methods. It fails if a method's signature
// is not one this package can call.
func (s *Server) Register(name string, hub any) error {
	ht, err := newHubType(name, hub)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(name)
	if _, dup := s.hubs[key]; dup {
		return fmt.Errorf("hubs: hub %q is registered twice", name)
	}
	s.hubs[key] = ht
	return nil
}

// Run serves until ctx ends or the node fails.
func (s *Server) Run(ctx context.Context) error { return s.node.Run(ctx) }

// Close stops the node.
func (s *Server) Close() { s.node.Close() }

func (s *Server) hub(name string) *hubType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hubs[strings.ToLower(name)]
}

// Hubs lists the registered hubs (signalr.MethodLister).
func (s *Server) Hubs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.hubs))
	for _, h := range s.hubs {
		out = append(out, h.name)
	}
	return out
}

// Methods lists a hub's methods as declared (signalr.MethodLister).
func (s *Server) Methods(hub string) []string {
	h := s.hub(hub)
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h.methods))
	for _, m := range h.methods {
		out = append(out, m.name)
	}
	return out
}

// Connect asks Config.OnConnecting, if set, whether to admit c.
func (s *Server) Connect(ctx context.Context, c *signalr.ConnInfo) (signalr.Admission, error) {
	if s.connecting == nil {
		return signalr.Admission{}, nil
	}
	return s.connecting(ctx, c)
}

// Connected calls the hub's OnConnected, if it has one.
func (s *Server) Connected(c signalr.ConnInfo) {
	h := s.hub(c.Hub)
	if h == nil || h.onConnected == nil {
		return
	}
	hc := s.newContext(context.Background(), c)
	if err := h.onConnected(hc); err != nil {
		s.log.Warn("hubs: OnConnected failed", "hub", c.Hub, "connection", c.ID, "err", err)
	}
}

// Disconnected calls the hub's OnDisconnected, if it has one.
func (s *Server) Disconnected(c signalr.ConnInfo, errMsg string) {
	h := s.hub(c.Hub)
	if h == nil || h.onDisconnected == nil {
		return
	}
	var err error
	if errMsg != "" {
		err = fmt.Errorf("%s", errMsg)
	}
	if e := h.onDisconnected(s.newContext(context.Background(), c), err); e != nil {
		s.log.Warn("hubs: OnDisconnected failed", "hub", c.Hub, "connection", c.ID, "err", e)
	}
}

var _ signalr.Application = (*Server)(nil)
var _ signalr.MethodLister = (*Server)(nil)

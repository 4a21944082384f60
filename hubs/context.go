package hubs

import (
	"context"

	"github.com/backplane/backplane/transport/signalr"
)

// Context is a hub method's caller context (ASP.NET's Hub.Context,
// Clients and Groups together). A method may take it, or a
// context.Context, as its first parameter; it is a context.Context that
// ends when the invocation is cancelled or the connection ends.
type Context struct {
	context.Context
	// Conn describes the calling connection.
	Conn signalr.ConnInfo
	// Clients addresses clients of the caller's hub.
	Clients *Clients
	// Groups changes group membership in the caller's hub.
	Groups *Groups
	s      *Server
}

// ConnectionID is the caller's connection id.
func (c *Context) ConnectionID() string { return c.Conn.ID }

// UserID is the caller's user id.
func (c *Context) UserID() string { return c.Conn.UserID }

// InvokeClient asks a connection of the caller's hub for a result; see
// Server.InvokeClient.
func (c *Context) InvokeClient(ctx context.Context, connID, target string, result any, args ...any) error {
	return c.s.InvokeClient(ctx, c.Conn.Hub, connID, target, result, args...)
}

func (s *Server) newContext(ctx context.Context, c signalr.ConnInfo) *Context {
	return &Context{
		Context: ctx,
		Conn:    c,
		Clients: &Clients{s: s, hub: c.Hub, caller: c.ID},
		Groups:  &Groups{s: s, hub: c.Hub},
		s:       s,
	}
}

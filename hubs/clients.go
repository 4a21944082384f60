package hubs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/backplane/backplane/fsm"
)

// Clients addresses a hub's clients (ASP.NET's IHubCallerClients). Every
// Send is committed to the replicated log, so every node delivers it to
// the recipients it holds.
type Clients struct {
	s      *Server
	hub    string
	caller string // empty outside a hub call
}

// Clients returns the Clients of hub, for sends from outside a hub method
// (ASP.NET's IHubContext). Caller and Others need a caller and are
// unusable there.
func (s *Server) Clients(hub string) *Clients {
	return &Clients{s: s, hub: strings.ToLower(hub)}
}

// ClientProxy is a set of recipients.
type ClientProxy struct {
	c        *Clients
	audience fsm.Audience
	names    []string
	excluded []string
}

// Send invokes target with args on every recipient; it returns once the
// send is committed.
func (p ClientProxy) Send(ctx context.Context, target string, args ...any) error {
	if p.c.s.node == nil {
		return errors.New("hubs: the server has no node")
	}
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("hubs: encode the arguments of %q: %w", target, err)
	}
	_, err = p.c.s.node.Publish(ctx, &fsm.Publish{Hub: p.c.hub, Audience: p.audience, Names: p.names, Excluded: p.excluded, Target: target, Arguments: raw})
	return err
}

func (c *Clients) proxy(a fsm.Audience, names, excluded []string) ClientProxy {
	return ClientProxy{c: c, audience: a, names: names, excluded: excluded}
}

// All is every connection of the hub.
func (c *Clients) All() ClientProxy { return c.proxy(fsm.ToAll, nil, nil) }

// AllExcept is every connection but the ids given.
func (c *Clients) AllExcept(ids ...string) ClientProxy { return c.proxy(fsm.ToAll, nil, ids) }

// Group is the members of one group.
func (c *Clients) Group(name string) ClientProxy {
	return c.proxy(fsm.ToGroups, []string{name}, nil)
}

// Groups is the members of any of the groups.
func (c *Clients) Groups(names ...string) ClientProxy { return c.proxy(fsm.ToGroups, names, nil) }

// GroupExcept is a group's members but the ids given.
func (c *Clients) GroupExcept(name string, ids ...string) ClientProxy {
	return c.proxy(fsm.ToGroups, []string{name}, ids)
}

// User is every connection of one user.
func (c *Clients) User(id string) ClientProxy { return c.proxy(fsm.ToUsers, []string{id}, nil) }

// Users is every connection of the users.
func (c *Clients) Users(ids ...string) ClientProxy { return c.proxy(fsm.ToUsers, ids, nil) }

// Client is one connection.
func (c *Clients) Client(id string) ClientProxy {
	return c.proxy(fsm.ToConnections, []string{id}, nil)
}

// Clients is the connections given.
func (c *Clients) Clients(ids ...string) ClientProxy {
	return c.proxy(fsm.ToConnections, ids, nil)
}

// Caller is the calling connection.
func (c *Clients) Caller() ClientProxy { return c.Client(c.caller) }

// Others is every connection but the caller.
func (c *Clients) Others() ClientProxy { return c.AllExcept(c.caller) }

// OthersInGroup is a group's members but the caller.
func (c *Clients) OthersInGroup(name string) ClientProxy { return c.GroupExcept(name, c.caller) }

// Groups changes group membership of a hub's connections (ASP.NET's
// IGroupManager); each change is committed to the log.
type Groups struct {
	s   *Server
	hub string
}

// Add adds connection connID to group.
func (g *Groups) Add(ctx context.Context, connID, group string) error {
	return g.s.node.ChangeGroup(ctx, g.hub, connID, group, true)
}

// Remove removes connection connID from group.
func (g *Groups) Remove(ctx context.Context, connID, group string) error {
	return g.s.node.ChangeGroup(ctx, g.hub, connID, group, false)
}

// InvokeClient asks connection connID of hub to run target with args and
// decodes its result into result (a pointer, or nil to drop it), wherever
// the connection is held (ASP.NET's client results). ctx's deadline, if
// any, bounds the wait; otherwise 30 s.
func (s *Server) InvokeClient(ctx context.Context, hub, connID, target string, result any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("hubs: encode the arguments of %q: %w", target, err)
	}
	d := durationUntil(ctx)
	res, err := s.node.InvokeClient(ctx, strings.ToLower(hub), connID, target, raw, d)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(res, result); err != nil {
		return fmt.Errorf("hubs: decode the result of %q from %q: %w", target, connID, err)
	}
	return nil
}

// durationUntil is ctx's time left, or 0 (the default) without a deadline.
func durationUntil(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

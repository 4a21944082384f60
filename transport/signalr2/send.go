package signalr2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/backplane/backplane/transport/access"
)

// The relay hub methods every hub has (unless switched off), matched
// case-insensitively: the same as the ASP.NET Core clients' (docs/signalr.md).
var relayMethods = map[string]struct {
	op      RelayOp
	perm    string
	byGroup bool // the permission is also granted per group (the first argument)
}{
	"joingroup":        {JoinGroup, access.PermJoinLeaveGroup, true},
	"leavegroup":       {LeaveGroup, access.PermJoinLeaveGroup, true},
	"sendtoall":        {SendToAll, access.PermSendToAll, false},
	"sendtogroup":      {SendToGroup, access.PermSendToGroup, true},
	"sendtouser":       {SendToUser, access.PermSendToUser, false},
	"sendtoconnection": {SendToConnection, access.PermSendToConnection, false},
}

// relayMethodNames are the relay methods as the proxy script and errors
// name them.
var relayMethodNames = []string{"JoinGroup", "LeaveGroup", "SendToAll", "SendToGroup", "SendToUser", "SendToConnection"}

// serveSend answers /send: the hub invocation in the form field data, its
// response in the body.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	c, ok := s.openRequest(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, int64(s.opts.MaxMessageSize)+4096)
	data, err := formValue(w, r, "data")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if data == "" {
		writeError(w, http.StatusBadRequest, errors.New("Protocol error: /send needs the form field data."))
		return
	}
	if len(data) > s.opts.MaxMessageSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the invocation is larger than %d bytes", s.opts.MaxMessageSize))
		return
	}
	inv, id, err := parseInvocation([]byte(data))
	if err != nil {
		if id == "" {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSONBytes(w, (&hubResponse{ID: id, Error: err.Error(), HubError: true}).marshal())
		return
	}
	writeJSONBytes(w, s.invoke(r.Context(), c, inv, id).marshal())
}

// invokeFrame answers a hub invocation that came in a WebSocket frame
// (nil: nothing to answer).
func (s *Server) invokeFrame(ctx context.Context, c *conn, data []byte) []byte {
	inv, id, err := parseInvocation(data)
	if err != nil {
		if id == "" {
			s.log.Debug("SignalR 2 frame ignored", "conn", c.id, "err", err)
			return nil
		}
		return (&hubResponse{ID: id, Error: err.Error(), HubError: true}).marshal()
	}
	return s.invoke(ctx, c, inv, id).marshal()
}

// invoke runs a relay method, or the Application's, and returns its
// response.
func (s *Server) invoke(ctx context.Context, c *conn, inv *hubInvocation, id string) *hubResponse {
	resp := &hubResponse{ID: id}
	hub, err := hubName(inv.Hub)
	if err != nil {
		resp.Error, resp.HubError = fmt.Sprintf("'%s' Hub could not be resolved: %v", inv.Hub, err), true
		return resp
	}
	st, done := s.calls.get(c.id)
	defer done()
	if msg := s.overRate(st, inv.Method); msg != "" {
		resp.Error, resp.HubError = msg, true
		return resp
	}
	if !c.hasHub(hub) && s.opts.Authenticate != nil {
		// The token was checked for the connection's hubs; a send to
		// another hub needs a token good for that one too.
		if _, err := s.authenticate(c.request(), []string{hub}); err != nil {
			resp.Error, resp.HubError = fmt.Sprintf("Failed to invoke '%s': %v", inv.Method, err), true
			return resp
		}
	}
	if s.forApplication(c, hub, inv) {
		return s.invokeApplication(ctx, c, st, hub, inv, id)
	}
	r, err := s.relayOf(c, hub, inv)
	if err != nil {
		resp.Error, resp.HubError = err.Error(), true
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ProposeTimeout)
	defer cancel()
	index, err := s.cluster.Relay(ctx, hub, c.id, r)
	switch {
	case errors.Is(err, ErrRejected):
		resp.Error, resp.HubError = fmt.Sprintf("Failed to invoke '%s': %v", inv.Method, err), true
	case err != nil:
		s.log.Warn("SignalR 2 relay invocation", "hub", hub, "method", inv.Method, "err", err)
		resp.Error = fmt.Sprintf("There was an error invoking Hub method '%s.%s': %v", hub, inv.Method, err)
	case r.Op != JoinGroup && r.Op != LeaveGroup:
		resp.Result = json.RawMessage(fmt.Sprint(index))
	}
	return resp
}

// relayOf checks a relay invocation (method, permission, arguments,
// limits) and returns what it asks of the cluster.
func (s *Server) relayOf(c *conn, hub string, inv *hubInvocation) (Relay, error) {
	method, ok := relayMethods[strings.ToLower(inv.Method)]
	if !ok {
		return Relay{}, fmt.Errorf("'%s' method could not be resolved on hub '%s': its methods are the relay methods %s", inv.Method, hub, strings.Join(relayMethodNames, ", "))
	}
	if s.relayOff[hub] {
		return Relay{}, fmt.Errorf("'%s' method could not be resolved: relay methods are switched off on hub '%s'", inv.Method, hub)
	}
	r := Relay{Op: method.op}
	skip := 0
	if method.op != SendToAll {
		name, err := stringArg(inv.Args, 0, audienceNoun(method.op))
		if err != nil {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
		}
		r.Name, skip = name, 1
	}
	if access.Restricted(s.opts.RelayPolicy) {
		group := ""
		if method.byGroup {
			group = r.Name
		}
		if err := c.ident.Permissions.Check(method.perm, group); err != nil {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
		}
	}
	switch method.op {
	case JoinGroup, LeaveGroup:
		if len(inv.Args) != 1 {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': it takes one argument, the group name", inv.Method)
		}
		if !c.hasHub(hub) {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': the connection did not subscribe to hub '%s' (give its proxy a client method before start)", inv.Method, hub)
		}
		if method.op == JoinGroup {
			if err := s.admitJoin(c, hub, r.Name); err != nil {
				return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
			}
		}
	default:
		target, err := stringArg(inv.Args, skip, "the target method name")
		if err != nil {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
		}
		r.Target = target
		if r.Arguments, err = joinArgs(inv.Args[skip+1:]); err != nil {
			return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
		}
	}
	if err := s.cluster.CheckRelay(hub, c.id, r); err != nil {
		return Relay{}, fmt.Errorf("Failed to invoke '%s': %w", inv.Method, err)
	}
	return r, nil
}

// admitJoin refuses a JoinGroup past the connection's group limit.
func (s *Server) admitJoin(c *conn, hub, group string) error {
	limit := s.opts.MaxGroupsPerConnection
	if limit < 0 {
		return nil
	}
	groups, err := s.cluster.Groups(hub, c.id, "")
	if err != nil {
		return err
	}
	if len(groups) >= limit && !slices.Contains(groups, group) {
		return fmt.Errorf("the connection is already in %d groups of hub '%s', the most it may join", len(groups), hub)
	}
	return nil
}

func audienceNoun(op RelayOp) string {
	switch op {
	case SendToGroup, JoinGroup, LeaveGroup:
		return "the group name"
	case SendToUser:
		return "the user id"
	}
	return "the connection id"
}

// stringArg reads argument i as a non-empty string.
func stringArg(args []json.RawMessage, i int, what string) (string, error) {
	if i >= len(args) {
		return "", fmt.Errorf("%s is missing", what)
	}
	var v string
	if err := json.Unmarshal(args[i], &v); err != nil || v == "" {
		return "", fmt.Errorf("%s must be a non-empty string", what)
	}
	return v, nil
}

// joinArgs makes the arguments one compact JSON array.
func joinArgs(args []json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, a := range args {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := json.Compact(&buf, a); err != nil {
			return nil, fmt.Errorf("argument %d: %v", i, err)
		}
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

package signalr2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// The Application (Options.Application: an upstream webhook or Go hubs)
// sees SignalR 2 connections as it sees the ASP.NET Core clients', one
// hub at a time:
//
//   - Connect is asked at /connect, once per hub of connectionData,
//     before the connection is recorded; a refusal answers its status
//     (401, 403, …). The groups it admits the connection to are joined
//     with the record. Its UserID is not applied: a SignalR 2
//     connection's user is bound to its connection token at negotiate.
//   - Connected is told once per hub once /connect recorded the
//     connection, by the node that recorded it.
//   - Disconnected is told once per hub by the node that commits the
//     close (an abort, or the holder's reaper once the client is gone),
//     or, when the record was closed by someone else (a REST DELETE), by
//     the node holding the connection when it notices. A dead node's
//     connections are told by the node that expires them.
//   - Invoke runs each hub invocation whose method is not a relay method
//     the client may call, one at a time per connection, in the order they
//     reached this node.

// Holds reports whether this node serves the connection in hub (a
// request of it is in progress here), holds it, or served it in this run
// and has not seen it end. The node's other client layer keeps such
// connections when it expires what an earlier run of the node held.
func (s *Server) Holds(hub, connID string) bool {
	return s.live.holds(strings.ToLower(hub), connID)
}

// connInfo describes c in hub to the Application.
func (s *Server) connInfo(c *conn, hub string) signalr.ConnInfo {
	info := signalr.ConnInfo{Hub: hub, ID: c.id, UserID: c.user, Claims: c.ident.Claims, Protocol: hubproto.NameJSON}
	if q := c.query(); q != nil {
		info.Query = clientQuery(q)
	}
	return info
}

// clientQuery is a request's query string as the Application sees it:
// without the access and connection tokens.
func clientQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		if strings.EqualFold(k, "access_token") || strings.EqualFold(k, "connectionToken") {
			continue
		}
		out[k] = v
	}
	return out
}

// admit asks the Application whether c may connect, once per hub, and
// returns the groups it admits it to per hub. A refusal is answered here:
// false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, c *conn) (map[string][]string, bool) {
	app := s.opts.Application
	if app == nil {
		return nil, true
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ProposeTimeout)
	defer cancel()
	var groups map[string][]string
	for _, hub := range c.hubs {
		info := s.connInfo(c, hub)
		info.Protocol = ""
		adm, err := app.Connect(ctx, &info)
		if err != nil {
			status, msg := refusal(err)
			s.log.Debug("connection refused by the application", "conn", c.id, "hub", hub, "status", status, "err", err)
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
			}
			writeError(w, status, errors.New(msg))
			return nil, false
		}
		for _, g := range adm.Groups {
			if err := fsm.ValidateName("group", g); err != nil {
				s.log.Warn("the application's group for a connection is invalid", "conn", c.id, "hub", hub, "err", err)
				writeError(w, http.StatusInternalServerError, errors.New("the application gave an invalid group name"))
				return nil, false
			}
		}
		if len(adm.Groups) > 0 {
			if groups == nil {
				groups = map[string][]string{}
			}
			groups[hub] = adm.Groups
		}
	}
	return groups, true
}

// refusal is the HTTP status and text a Connect error answers: a
// *signalr.Refusal's own, else 500.
func refusal(err error) (int, string) {
	var r *signalr.Refusal
	if errors.As(err, &r) && r.Status >= 400 && r.Status < 600 {
		return r.Status, r.Message
	}
	return http.StatusInternalServerError, "the application could not accept the connection"
}

// tellConnected tells the Application that c is open, once per hub.
func (s *Server) tellConnected(c *conn) {
	if app := s.opts.Application; app != nil {
		for _, hub := range c.hubs {
			app.Connected(s.connInfo(c, hub))
		}
	}
}

// tellDisconnected tells the Application that the connection id of user
// ended in hubs; c, when known, describes it further.
func (s *Server) tellDisconnected(id, user string, hubs []string, c *conn, errMsg string) {
	app := s.opts.Application
	if app == nil {
		return
	}
	for _, hub := range hubs {
		info := signalr.ConnInfo{Hub: hub, ID: id, UserID: user}
		if c != nil {
			info = s.connInfo(c, hub)
		}
		app.Disconnected(info, errMsg)
	}
}

// ended forgets a connection whose record this node found closed (by
// someone else: a REST DELETE), and tells the Application if this node
// held it.
func (s *Server) ended(c *conn, errMsg string) {
	h := s.live.forget(c.id)
	s.calls.drop(c.id)
	if h != nil {
		s.tellDisconnected(c.id, h.user, h.hubs, c, errMsg)
	}
}

// forApplication reports whether an invocation goes to the Application:
// any that is not a relay method the client may call, when there is one.
func (s *Server) forApplication(c *conn, hub string, inv *hubInvocation) bool {
	if s.opts.Application == nil {
		return false
	}
	method, ok := relayMethods[strings.ToLower(inv.Method)]
	if !ok || s.relayOff[hub] {
		return true
	}
	if !access.Restricted(s.opts.RelayPolicy) {
		return false
	}
	group := ""
	if method.byGroup {
		group, _ = stringArg(inv.Args, 0, "")
	}
	return c.ident.Permissions.Check(method.perm, group) != nil
}

// errNoStreams: SignalR 2 has no streams.
var errNoStreams = errors.New("SignalR 2 clients have no streams")

// invokeApplication runs an invocation in the Application, after the
// connection's earlier ones, and answers its completion.
func (s *Server) invokeApplication(ctx context.Context, c *conn, st *callState, hub string, inv *hubInvocation, id string) *hubResponse {
	resp := &hubResponse{ID: id}
	args := make([]hubproto.RawValue, len(inv.Args))
	for i, a := range inv.Args {
		var buf bytes.Buffer
		if err := json.Compact(&buf, a); err != nil {
			resp.Error, resp.HubError = fmt.Sprintf("Failed to invoke '%s': argument %d: %v", inv.Method, i, err), true
			return resp
		}
		args[i] = hubproto.JSONValue(buf.Bytes())
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.InvokeTimeout)
	defer cancel()
	release, err := st.wait(ctx)
	if err != nil {
		resp.Error = fmt.Sprintf("There was an error invoking Hub method '%s.%s': %v", hub, inv.Method, err)
		return resp
	}
	defer release()
	call := &signalr.Call{
		Conn:     s.connInfo(c, hub),
		Message:  &hubproto.Message{Type: hubproto.Invocation, InvocationID: id, Target: inv.Method, Arguments: args},
		Protocol: hubproto.JSON{},
		SendItem: func(hubproto.RawValue) error { return errNoStreams },
		Upload: func(string) (<-chan hubproto.RawValue, func() error) {
			closed := make(chan hubproto.RawValue)
			close(closed)
			return closed, func() error { return errNoStreams }
		},
		Cancelled: ctx.Done(),
	}
	done := s.opts.Application.Invoke(ctx, call)
	switch {
	case done.Unknown:
		resp.Error, resp.HubError = fmt.Sprintf("'%s' method could not be resolved on hub '%s'.", inv.Method, hub), true
	case done.Error != "":
		resp.Error, resp.HubError = done.Error, true
	case done.HasResult:
		result, err := done.Result.AppendJSON(nil)
		if err == nil && !json.Valid(result) {
			err = errors.New("not JSON")
		}
		if err != nil {
			s.log.Warn("the application's result is not a JSON value", "hub", hub, "method", inv.Method, "err", err)
			resp.Error = fmt.Sprintf("There was an error invoking Hub method '%s.%s': the result could not be encoded", hub, inv.Method)
			return resp
		}
		resp.Result = result
	}
	return resp
}

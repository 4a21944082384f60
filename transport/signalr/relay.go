package signalr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/hubproto"
)

// The relay hub methods, matched case-insensitively. Each send is committed
// to the log before the invocation completes, and the completion's result
// is the message index.
const (
	methodJoinGroup        = "joingroup"
	methodLeaveGroup       = "leavegroup"
	methodSendToAll        = "sendtoall"
	methodSendToGroup      = "sendtogroup"
	methodSendToUser       = "sendtouser"
	methodSendToConnection = "sendtoconnection"
)

var errArguments = errors.New("bad arguments")

// unknownMethod is ASP.NET's answer to an invocation of a method the hub
// does not have.
func unknownMethod(target string) string {
	return fmt.Sprintf("Unknown hub method '%s'", target)
}

// streamInvocationError is ASP.NET's answer to a StreamInvocation: every
// relay method is a plain one.
func streamInvocationError(target string) string {
	if _, known := relayPermissions[strings.ToLower(target)]; known {
		return fmt.Sprintf("The client attempted to invoke the non-streaming '%s' method with a streaming invocation.", target)
	}
	return unknownMethod(target)
}

// invoke commits a relay invocation, or completes it at once with an
// error: over the connection's invocation rate, refused, or a JoinGroup
// past the connection's group limit (limits.go).
func (c *conn) invoke(m *hubproto.Message) {
	if errMsg := c.overRate(m); errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	relay, errMsg := c.relayCommand(m)
	if errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	group, errMsg := c.admitGroupChange(m)
	if errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	c.enqueueInvocation(pendingInvocation{id: m.InvocationID, target: m.Target, relay: relay, group: group})
}

// relayCommand turns a relay method invocation into what it asks of the
// cluster, or says why it cannot be done.
func (c *conn) relayCommand(m *hubproto.Message) (Relay, string) {
	method := strings.ToLower(m.Target)
	if c.srv.relayOff[strings.ToLower(c.hub)] {
		return Relay{}, fmt.Sprintf("Method '%s' does not exist: relay methods are switched off on hub '%s'.", m.Target, c.hub)
	}
	if _, known := relayPermissions[method]; !known {
		return Relay{}, unknownMethod(m.Target)
	}
	if len(m.StreamIDs) > 0 {
		// No relay method takes an upload stream: as ASP.NET answers a
		// method that expects none (its items are never read).
		return Relay{}, fmt.Sprintf("An unexpected error occurred invoking '%s' on the server. HubException: Client sent %d stream(s), Hub method expects 0.", m.Target, len(m.StreamIDs))
	}
	if err := c.permitted(method, m); err != nil {
		return Relay{}, fmt.Sprintf("Failed to invoke '%s': %v", m.Target, err)
	}
	var r Relay
	var err error
	switch method {
	case methodJoinGroup:
		r, err = c.membershipCommand(m, JoinGroup)
	case methodLeaveGroup:
		r, err = c.membershipCommand(m, LeaveGroup)
	case methodSendToAll:
		r, err = c.sendCommand(m, SendToAll, 0)
	case methodSendToGroup:
		r, err = c.sendCommand(m, SendToGroup, 1)
	case methodSendToUser:
		r, err = c.sendCommand(m, SendToUser, 1)
	case methodSendToConnection:
		r, err = c.sendCommand(m, SendToConnection, 1)
	default:
		return Relay{}, unknownMethod(m.Target)
	}
	if err == nil {
		err = c.srv.cluster.CheckRelay(c.hub, c.id, r)
	}
	if err != nil {
		return Relay{}, fmt.Sprintf("Failed to invoke '%s': %v", m.Target, err)
	}
	return r, ""
}

// relayPermissions names the permission each relay method needs under
// the roles policy, and whether it is granted per group (the group is the
// first argument).
var relayPermissions = map[string]struct {
	perm    string
	byGroup bool
}{
	methodJoinGroup:        {access.PermJoinLeaveGroup, true},
	methodLeaveGroup:       {access.PermJoinLeaveGroup, true},
	methodSendToAll:        {access.PermSendToAll, false},
	methodSendToGroup:      {access.PermSendToGroup, true},
	methodSendToUser:       {access.PermSendToUser, false},
	methodSendToConnection: {access.PermSendToConnection, false},
}

// permitted checks, under the roles policy, that the connection's token
// grants what the relay method needs; the error names the missing
// permission. An unknown method passes (relayCommand refuses it).
func (c *conn) permitted(method string, m *hubproto.Message) error {
	need, ok := relayPermissions[method]
	if !ok || !access.Restricted(c.srv.opts.RelayPolicy) {
		return nil
	}
	group := ""
	if need.byGroup && !c.perms.Allows(need.perm, "") {
		// A missing or malformed group name grants nothing per group.
		group, _ = stringArg(m, 0, "the group name")
	}
	return c.perms.Check(need.perm, group)
}

// complete answers an invocation that asked for a result (no answer is ever
// sent to a fire-and-forget send). resultJSON nil means a void result.
func (c *conn) complete(invocationID string, resultJSON []byte, errMsg string) {
	if invocationID == "" {
		if errMsg != "" {
			c.srv.log.Debug("fire-and-forget invocation failed", "conn", c.id, "err", errMsg)
		}
		return
	}
	m := hubproto.Message{Type: hubproto.Completion, InvocationID: invocationID, Error: errMsg}
	if resultJSON != nil {
		m.Result, m.HasResult = hubproto.JSONValue(resultJSON), true
	}
	rec, err := c.protocolOf().Append(nil, &m)
	if err != nil {
		c.srv.log.Error("encode completion", "err", err)
		return
	}
	c.send(rec)
}

func stringArg(m *hubproto.Message, i int, what string) (string, error) {
	if i >= len(m.Arguments) {
		return "", fmt.Errorf("%w: %s is missing", errArguments, what)
	}
	raw, err := m.Arguments[i].AppendJSON(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errArguments, what, err)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return "", fmt.Errorf("%w: %s must be a non-empty string", errArguments, what)
	}
	return s, nil
}

func (c *conn) membershipCommand(m *hubproto.Message, op RelayOp) (Relay, error) {
	group, err := stringArg(m, 0, "the group name")
	if err != nil {
		return Relay{}, err
	}
	return Relay{Op: op, Name: group}, nil
}

// sendCommand builds a send from Send*(name?, target, args...): skip
// names the leading audience argument (0 or 1).
func (c *conn) sendCommand(m *hubproto.Message, op RelayOp, skip int) (Relay, error) {
	r := Relay{Op: op}
	if skip == 1 {
		name, err := stringArg(m, 0, "the "+audienceNoun(op))
		if err != nil {
			return Relay{}, err
		}
		r.Name = name
	}
	target, err := stringArg(m, skip, "the target method name")
	if err != nil {
		return Relay{}, err
	}
	r.Target = target
	sent := m.Arguments[skip+1:]
	msgpack := len(sent) > 0
	for _, a := range sent {
		msgpack = msgpack && a.Format == hubproto.FormatMsgpack
	}
	if msgpack {
		// Keep what the client sent for MessagePack recipients; JSON
		// recipients get the JSON form, which every value has.
		r.MsgpackArguments = hubproto.AppendMsgpackArray(nil, sent)
	}
	args := []byte{'['}
	for i, a := range sent {
		if i > 0 {
			args = append(args, ',')
		}
		if msgpack {
			args, err = hubproto.MsgpackToJSONForm(args, a.Data)
		} else {
			args, err = a.AppendJSON(args)
		}
		if err != nil {
			return Relay{}, fmt.Errorf("%w: argument %d: %v", errArguments, i, err)
		}
	}
	args = append(args, ']')
	var compact bytes.Buffer
	if err := json.Compact(&compact, args); err != nil {
		return Relay{}, fmt.Errorf("%w: %v", errArguments, err)
	}
	r.Arguments = compact.Bytes()
	return r, nil
}

func audienceNoun(op RelayOp) string {
	switch op {
	case SendToGroup:
		return "group name"
	case SendToUser:
		return "user id"
	}
	return "connection id"
}

package signalr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/backplane/backplane/fsm"
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

// invoke commits a relay invocation, or completes it at once with an
// error: over the connection's invocation rate, refused, or a JoinGroup
// past the connection's group limit (limits.go).
func (c *conn) invoke(m *hubproto.Message) {
	if errMsg := c.overRate(m); errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	cmd, errMsg := c.relayCommand(m)
	if errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	group, errMsg := c.admitGroupChange(m)
	if errMsg != "" {
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	c.enqueueInvocation(pendingInvocation{id: m.InvocationID, target: m.Target, cmd: cmd, group: group})
}

// relayCommand turns a relay method invocation into its command, or says
// why it cannot be done.
func (c *conn) relayCommand(m *hubproto.Message) (fsm.Command, string) {
	method := strings.ToLower(m.Target)
	if c.srv.relayOff[strings.ToLower(c.hub)] {
		return nil, fmt.Sprintf("Method '%s' does not exist: relay methods are switched off on hub '%s'.", m.Target, c.hub)
	}
	if err := c.permitted(method, m); err != nil {
		return nil, fmt.Sprintf("Failed to invoke '%s': %v", m.Target, err)
	}
	var cmd fsm.Command
	var err error
	switch method {
	case methodJoinGroup, methodLeaveGroup:
		cmd, err = c.membershipCommand(m, method == methodJoinGroup)
	case methodSendToAll:
		cmd, err = c.sendCommand(m, fsm.ToAll, 0)
	case methodSendToGroup:
		cmd, err = c.sendCommand(m, fsm.ToGroups, 1)
	case methodSendToUser:
		cmd, err = c.sendCommand(m, fsm.ToUsers, 1)
	case methodSendToConnection:
		cmd, err = c.sendCommand(m, fsm.ToConnections, 1)
	default:
		return nil, fmt.Sprintf("Failed to invoke '%s': method does not exist. Relay methods: JoinGroup, LeaveGroup, SendToAll, SendToGroup, SendToUser, SendToConnection.", m.Target)
	}
	if err != nil {
		return nil, fmt.Sprintf("Failed to invoke '%s': %v", m.Target, err)
	}
	return cmd, ""
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

func (c *conn) membershipCommand(m *hubproto.Message, add bool) (fsm.Command, error) {
	group, err := stringArg(m, 0, "the group name")
	if err != nil {
		return nil, err
	}
	mem := &fsm.Membership{Hub: c.hub, Group: group, Kind: fsm.MemberConnection, Member: c.id}
	if err := fsm.ValidateMembership(mem, false); err != nil {
		return nil, err
	}
	return fsm.EncodeMembership(mem, add), nil
}

// sendCommand builds a publish from Send*(name?, target, args...): skip
// names the leading audience argument (0 or 1).
func (c *conn) sendCommand(m *hubproto.Message, audience fsm.Audience, skip int) (fsm.Command, error) {
	p := &fsm.Publish{Hub: c.hub, Audience: audience}
	if skip == 1 {
		name, err := stringArg(m, 0, "the "+audienceNoun(audience))
		if err != nil {
			return nil, err
		}
		p.Names = []string{name}
	}
	target, err := stringArg(m, skip, "the target method name")
	if err != nil {
		return nil, err
	}
	p.Target = target
	args := []byte{'['}
	for i, a := range m.Arguments[skip+1:] {
		if i > 0 {
			args = append(args, ',')
		}
		if args, err = a.AppendJSON(args); err != nil {
			return nil, fmt.Errorf("%w: argument %d: %v", errArguments, i, err)
		}
	}
	args = append(args, ']')
	var compact bytes.Buffer
	if err := json.Compact(&compact, args); err != nil {
		return nil, fmt.Errorf("%w: %v", errArguments, err)
	}
	p.Arguments = compact.Bytes()
	if err := fsm.ValidatePublish(p); err != nil {
		return nil, err
	}
	return fsm.EncodePublish(p), nil
}

func audienceNoun(a fsm.Audience) string {
	switch a {
	case fsm.ToGroups:
		return "group name"
	case fsm.ToUsers:
		return "user id"
	}
	return "connection id"
}

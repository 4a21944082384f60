package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/backplane/backplane/fsm"
)

// The API an application embedding a node uses (package hubs): the same
// commits and client calls the REST API makes, without HTTP.

// Publish commits p to the log (validated as a REST send is) and returns
// its index.
func (n *Node) Publish(ctx context.Context, p *fsm.Publish) (uint64, error) {
	if len(p.Arguments) == 0 {
		p.Arguments = []byte("[]")
	}
	if err := fsm.ValidatePublish(p); err != nil {
		return 0, fmt.Errorf("publish to %q: %w", p.Target, err)
	}
	res, err := n.proposer.ProposeOne(ctx, fsm.EncodePublish(p))
	if err != nil {
		n.metrics.publishes.WithLabelValues("failed").Inc()
		return 0, fmt.Errorf("publish to %q: %w", p.Target, err)
	}
	n.metrics.publishes.WithLabelValues("committed").Inc()
	return res.Index, nil
}

// ChangeGroup commits adding (add) or removing a connection of hub to or
// from group. Adding needs the connection to exist.
func (n *Node) ChangeGroup(ctx context.Context, hub, connID, group string, add bool) error {
	m := &fsm.Membership{Hub: hub, Group: group, Kind: fsm.MemberConnection, Member: connID}
	if err := fsm.ValidateMembership(m, !add); err != nil {
		return fmt.Errorf("group %q: %w", group, err)
	}
	if add {
		if err := n.connectionMustExist(hub, connID); err != nil {
			// This node may not have applied the connection's open yet
			// (a follower): catch up with the leader's commit, then look again.
			if berr := n.readBarrier(ctx); berr != nil {
				return fmt.Errorf("add %q to group %q: %w", connID, group, berr)
			}
			if err := n.connectionMustExist(hub, connID); err != nil {
				return fmt.Errorf("add %q to group %q: %w", connID, group, err)
			}
		}
	}
	if _, err := n.proposer.ProposeOne(ctx, fsm.EncodeMembership(m, add)); err != nil {
		return fmt.Errorf("group %q: %w", group, err)
	}
	return nil
}

// ClientInvocationError is a client's error answer to InvokeClient: its
// handler failed or it has no handler for the target.
type ClientInvocationError struct{ Message string }

func (e *ClientInvocationError) Error() string { return "client error: " + e.Message }

// InvokeClient asks connection connID of hub to run target with argsJSON
// (a JSON array) and returns its JSON result, wherever the connection is
// held: the holder is found in the connection record and the call is
// forwarded to it as the REST API's :invoke does. timeout <= 0 means
// DefaultClientInvokeTimeout.
func (n *Node) InvokeClient(ctx context.Context, hub, connID, target string, argsJSON []byte, timeout time.Duration) (json.RawMessage, error) {
	if timeout <= 0 || timeout > maxClientInvokeTimeout {
		timeout = DefaultClientInvokeTimeout
	}
	if len(argsJSON) == 0 {
		argsJSON = []byte("[]")
	}
	call := &clientCall{Op: clientOpInvoke, Hub: hub, ConnID: connID, Target: target, Arguments: argsJSON, TimeoutMS: timeout.Milliseconds()}
	rec, ok, err := n.fsm.Connection(hub, connID)
	if err != nil {
		return nil, fmt.Errorf("invoke %q on %q: %w", target, connID, err)
	}
	if !ok {
		return nil, fmt.Errorf("invoke %q: connection %q is not connected to hub %q", target, connID, hub)
	}
	var a clientAnswer
	if rec.NodeID == n.cfg.ID {
		a = n.serveClientCall(ctx, call)
	} else {
		a = n.forwardClientCall(ctx, rec.NodeID, call)
	}
	if a.status != http.StatusOK {
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(a.body, &body) // a body without it leaves the status
		if a.code == "ClientInvocationError" {
			return nil, &ClientInvocationError{Message: body.Error}
		}
		if body.Error == "" {
			body.Error = fmt.Sprintf("status %d", a.status)
		}
		return nil, fmt.Errorf("invoke %q on %q: %w", target, connID, errors.New(body.Error))
	}
	var res struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		return nil, fmt.Errorf("invoke %q on %q: the answer: %w", target, connID, err)
	}
	return res.Result, nil
}

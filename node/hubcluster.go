package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// hubCluster adapts the node to what the SignalR layer needs. It is the
// one place that turns SignalR's requests (open, close, take over, relay,
// record an invocation, checkpoint) into log commands.
type hubCluster struct{ n *Node }

var _ signalr.Cluster = hubCluster{}

func (h hubCluster) NodeID() string { return h.n.cfg.ID }

func (h hubCluster) NodeURL(id string) (string, bool) {
	info, ok, err := h.n.fsm.Node(id)
	if err != nil || !ok || info.HTTPAddr == "" {
		return "", false
	}
	return h.n.fwd.url(info.HTTPAddr), true
}

func (h hubCluster) Ready() bool {
	rs := h.n.raft.Status()
	return rs.LeaderID != "" && rs.AppliedIndex >= rs.CommitIndex
}

func (h hubCluster) ReadAll(after uint64, limit int) (fsm.Page, error) {
	return h.n.fsm.ReadAll(after, limit)
}

func (h hubCluster) Changed() <-chan struct{} { return h.n.fsm.Changed() }
func (h hubCluster) AfterChange(watches []fsm.Watch, fn func()) func() bool {
	return h.n.fsm.AfterChange(watches, fn)
}
func (h hubCluster) LastMessage() uint64  { return h.n.fsm.LastMessage() }
func (h hubCluster) AppliedIndex() uint64 { return h.n.fsm.AppliedIndex() }

func (h hubCluster) GroupMembers(hub, group string) ([]fsm.GroupMember, error) {
	return h.n.fsm.GroupMembers(hub, group)
}

func (h hubCluster) ConnectionHolder(hub, conn string) (string, bool, error) {
	info, ok, err := h.n.fsm.Connection(hub, conn)
	return info.NodeID, ok, err
}

func (h hubCluster) StatefulByToken(hash []byte) (fsm.StatefulConnection, bool, error) {
	return h.n.fsm.StatefulByToken(hash)
}

func (h hubCluster) ReadConnection(hub, conn string, after fsm.Position, limit int) ([]fsm.ConnEvent, bool, error) {
	return h.n.fsm.ReadConnection(hub, conn, after, limit)
}

func (h hubCluster) OpenConnection(ctx context.Context, o signalr.Opening) (uint64, error) {
	if o.Stateful {
		return h.proposeOne(ctx, h.statefulOpen(o))
	}
	return h.proposeOne(ctx, fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: h.n.cfg.ID}))
}

// TakeOver commits the same stateful-open as a stateful connection's
// first open: the state machine recognises the token's hash and moves the
// connection to this node.
func (h hubCluster) TakeOver(ctx context.Context, o signalr.Opening) (uint64, error) {
	return h.proposeOne(ctx, h.statefulOpen(o))
}

func (h hubCluster) statefulOpen(o signalr.Opening) fsm.Command {
	return fsm.EncodeStatefulOpen(&fsm.StatefulOpen{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID,
		NodeID: h.n.cfg.ID, Protocol: o.Protocol, TokenHash: o.TokenHash})
}

func (h hubCluster) CloseConnection(ctx context.Context, hub, connID, reason string) error {
	_, err := h.proposeOne(ctx, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: connID, NodeID: h.n.cfg.ID, Reason: reason}))
	return err
}

func (h hubCluster) FeatureLevel() uint64 { return h.n.fsm.ClusterLevel() }

// ExpireConnections expires the connections recorded on nodeID except
// those keep claims and, on this node, those its SignalR 2 endpoint
// serves (its connections are not the SignalR layer's to keep).
func (h hubCluster) ExpireConnections(ctx context.Context, nodeID, reason string, keep func(hub, connID string) bool) (int, error) {
	if s2 := h.n.signalr2; s2 != nil && nodeID == h.n.cfg.ID {
		inner := keep
		keep = func(hub, connID string) bool {
			return (inner != nil && inner(hub, connID)) || s2.Holds(hub, connID)
		}
	}
	return h.n.expireConnections(ctx, nodeID, reason, keep)
}

func (h hubCluster) CheckRelay(hub, connID string, r signalr.Relay) error {
	switch r.Op {
	case signalr.JoinGroup, signalr.LeaveGroup:
		return fsm.ValidateMembership(relayMembership(hub, connID, r), false)
	}
	p, err := relayPublish(hub, r)
	if err != nil {
		return err
	}
	return fsm.ValidatePublish(p)
}

func (h hubCluster) Relay(ctx context.Context, hub, connID string, relays []signalr.Relay) ([]signalr.RelayOutcome, error) {
	cmds := make([]fsm.Command, len(relays))
	for i, r := range relays {
		cmd, err := relayCommand(hub, connID, r)
		if err != nil {
			return nil, err
		}
		cmds[i] = cmd
	}
	results, err := h.n.proposer.Propose(ctx, cmds)
	if err != nil {
		return nil, err
	}
	out := make([]signalr.RelayOutcome, len(results))
	for i, res := range results {
		out[i] = signalr.RelayOutcome{Index: res.Index, Err: hubError(res.Err)}
	}
	return out, nil
}

func (h hubCluster) RecordInvocation(ctx context.Context, inv signalr.Invocation) (uint64, error) {
	rec := &fsm.Invocation{Hub: inv.Hub, ConnID: inv.ConnID, InvocationID: inv.InvocationID, ClientSeq: inv.ClientSeq, Error: inv.Error,
		AppValue: fsm.AppValue{HasValue: inv.HasValue || inv.Item || inv.Call, Item: inv.Item, StreamEnd: inv.StreamEnd, Call: inv.Call, Target: inv.Target, StreamStart: inv.StreamStart}}
	if rec.HasValue {
		rec.ValueFormat, rec.Value = byte(inv.Value.Format), inv.Value.Data
		if len(rec.Value) == 0 { // a zero RawValue is null
			rec.ValueFormat, rec.Value = byte(hubproto.FormatJSON), []byte("null")
		}
	}
	if inv.Relay != nil {
		inner, err := relayCommand(inv.Hub, inv.ConnID, *inv.Relay)
		if err != nil {
			return 0, hubError(err)
		}
		rec.Inner = inner
	}
	return h.proposeOne(ctx, fsm.EncodeInvocation(rec))
}

func (h hubCluster) Checkpoint(ctx context.Context, cps []signalr.Checkpoint) error {
	recs := make([]fsm.Checkpoint, len(cps))
	for i, cp := range cps {
		recs[i] = fsm.Checkpoint(cp)
	}
	_, err := h.proposeOne(ctx, fsm.EncodeCheckpoints(h.n.cfg.ID, recs))
	return err
}

// proposeOne commits one command and returns the Raft index of its entry
// (also when the command was rejected) and one error that holds its
// rejection.
func (h hubCluster) proposeOne(ctx context.Context, cmd fsm.Command) (uint64, error) {
	res, err := h.n.proposer.ProposeOne(ctx, cmd)
	return res.Entry, hubError(err)
}

// relayCommand encodes a relay invocation of a connection.
func relayCommand(hub, connID string, r signalr.Relay) (fsm.Command, error) {
	switch r.Op {
	case signalr.JoinGroup, signalr.LeaveGroup:
		return fsm.EncodeMembership(relayMembership(hub, connID, r), r.Op == signalr.JoinGroup), nil
	}
	p, err := relayPublish(hub, r)
	if err != nil {
		return nil, err
	}
	return fsm.EncodePublish(p), nil
}

// relayMembership is the group change a JoinGroup or LeaveGroup asks for.
func relayMembership(hub, connID string, r signalr.Relay) *fsm.Membership {
	return &fsm.Membership{Hub: hub, Group: r.Name, Kind: fsm.MemberConnection, Member: connID}
}

// relayPublish is the publish a send asks for.
func relayPublish(hub string, r signalr.Relay) (*fsm.Publish, error) {
	p := &fsm.Publish{Hub: hub, Target: r.Target, Arguments: r.Arguments, MsgpackArguments: r.MsgpackArguments}
	switch r.Op {
	case signalr.SendToAll:
		p.Audience = fsm.ToAll
		return p, nil
	case signalr.SendToGroup:
		p.Audience = fsm.ToGroups
	case signalr.SendToUser:
		p.Audience = fsm.ToUsers
	case signalr.SendToConnection:
		p.Audience = fsm.ToConnections
	default:
		return nil, fmt.Errorf("%w: unknown relay operation %d", fsm.ErrInvalidCommand, r.Op)
	}
	p.Names = []string{r.Name}
	return p, nil
}

// hubError makes a command's rejection (an error wrapping
// fsm.ErrInvalidCommand or fsm.ErrUnknownCommand, wherever it was decided)
// a signalr.ErrRejected with the same text; other errors pass unchanged.
func hubError(err error) error {
	if err == nil || !errors.Is(err, fsm.ErrInvalidCommand) && !errors.Is(err, fsm.ErrUnknownCommand) {
		return err
	}
	return rejection{err}
}

// rejection is a rejected command's error, as the SignalR layer reads it.
type rejection struct{ err error }

func (r rejection) Error() string   { return r.err.Error() }
func (r rejection) Unwrap() []error { return []error{r.err, signalr.ErrRejected} }

package signalr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/fsm"
)

// fakeCluster is an in-memory replicated state: Propose applies commands
// to a real FSM at once, as a single-node Raft would, and reads go to that
// FSM. Its nodes (node) are the Clusters the servers under test use.
type fakeCluster struct {
	id string
	f  *fsm.FSM

	mu     sync.Mutex // serialises Propose and guards the fields below
	index  uint64     // last Raft index handed out
	closed bool       // the FSM is closed: Propose fails
	urls   map[string]string
	hook   func(cmds []fsm.Command) // runs before each Propose applies
	fail   error                    // when set, Propose fails with it and applies nothing

	levelReads atomic.Int64 // FeatureLevel calls
	groupReads atomic.Int64 // GroupMembers calls
}

func newFakeCluster(t *testing.T, id string) *fakeCluster {
	t.Helper()
	return newFakeClusterAt(t, id, fsm.Level)
}

// newFakeClusterAt is a fake cluster at a feature level (0: as while a
// member of an older version remains).
func newFakeClusterAt(t *testing.T, id string, level uint64) *fakeCluster {
	t.Helper()
	f, err := fsm.New(fsm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("fsm.New: got error %v, want nil", err)
	}
	c := &fakeCluster{id: id, f: f, urls: map[string]string{}}
	if level > 0 {
		if _, err := c.node(id).commit(context.Background(), fsm.EncodeClusterLevel(level)); err != nil {
			t.Fatalf("raise the feature level: %v", err)
		}
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closed = true
		if err := f.Close(); err != nil {
			t.Errorf("FSM Close: got error %v, want nil", err)
		}
	})
	return c
}

func (c *fakeCluster) NodeID() string { return c.id }

func (c *fakeCluster) NodeURL(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.urls[id]
	return u, ok
}

func (c *fakeCluster) setNodeURL(id, u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.urls[id] = u
}

func (c *fakeCluster) Propose(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	hook := c.hook
	c.mu.Unlock()
	if hook != nil {
		hook(cmds)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("fake cluster: closed")
	}
	if c.fail != nil {
		return nil, c.fail
	}
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeEntry(time.Now().UnixNano(), cmds)})
	return res.([]fsm.Result), nil
}

func (c *fakeCluster) ReadAll(after uint64, limit int) (fsm.Page, error) {
	return c.f.ReadAll(after, limit)
}
func (c *fakeCluster) Changed() <-chan struct{} { return c.f.Changed() }
func (c *fakeCluster) AfterChange(watches []fsm.Watch, fn func()) func() bool {
	return c.f.AfterChange(watches, fn)
}
func (c *fakeCluster) LastMessage() uint64 { return c.f.LastMessage() }
func (c *fakeCluster) GroupMembers(hub, group string) ([]fsm.GroupMember, error) {
	c.groupReads.Add(1)
	return c.f.GroupMembers(hub, group)
}
func (c *fakeCluster) Ready() bool          { return true }
func (c *fakeCluster) AppliedIndex() uint64 { return c.f.AppliedIndex() }
func (c *fakeCluster) FeatureLevel() uint64 {
	c.levelReads.Add(1)
	return c.f.ClusterLevel()
}
func (c *fakeCluster) ConnectionHolder(hub, conn string) (string, bool, error) {
	info, ok, err := c.f.Connection(hub, conn)
	return info.NodeID, ok, err
}
func (c *fakeCluster) StatefulByToken(hash []byte) (fsm.StatefulConnection, bool, error) {
	return c.f.StatefulByToken(hash)
}
func (c *fakeCluster) ReadConnection(hub, conn string, after fsm.Position, limit int) ([]fsm.ConnEvent, bool, error) {
	return c.f.ReadConnection(hub, conn, after, limit)
}
func (c *fakeCluster) ConnectionsOn(nodeID string) ([]fsm.ConnectionInfo, error) {
	return c.f.ConnectionsOn(nodeID)
}

// setHook installs a function that runs before each Propose applies.
func (c *fakeCluster) setHook(hook func(cmds []fsm.Command)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = hook
}

// publish commits p and returns its message index.
func (c *fakeCluster) publish(t *testing.T, p *fsm.Publish) uint64 {
	t.Helper()
	res, err := c.Propose(context.Background(), []fsm.Command{fsm.EncodePublish(p)})
	if err != nil || res[0].Err != nil {
		t.Fatalf("publish %+v: got errors %v, %v, want nil", p, err, resultErr(res))
	}
	return res[0].Index
}

// recorded reports whether the replicated state lists a connection on this
// node.
func (c *fakeCluster) recorded(t *testing.T, connID string) bool {
	t.Helper()
	infos, err := c.ConnectionsOn(c.id)
	if err != nil {
		t.Fatalf("ConnectionsOn(%q): got error %v, want nil", c.id, err)
	}
	return slices.ContainsFunc(infos, func(i fsm.ConnectionInfo) bool { return i.ConnID == connID })
}

// fakeNode is one node over a fakeCluster: the Cluster a Server under test
// uses. It turns the layer's requests into log commands as the node's
// adapter does, naming its own node id.
type fakeNode struct {
	*fakeCluster
	id string
}

var _ Cluster = (*fakeNode)(nil)

// resultErr is the rejection of the first command of a proposal, if any.
func resultErr(res []fsm.Result) error {
	if len(res) > 0 {
		return res[0].Err
	}
	return nil
}

// node is the Cluster of node id over the replicated state c.
func (c *fakeCluster) node(id string) *fakeNode { return &fakeNode{fakeCluster: c, id: id} }

func (n *fakeNode) NodeID() string { return n.id }

// commit proposes cmds and returns their entry and the first rejection,
// as a signalr.ErrRejected.
func (n *fakeNode) commit(ctx context.Context, cmds ...fsm.Command) (uint64, error) {
	res, err := n.Propose(ctx, cmds)
	if err != nil {
		return 0, err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Entry, fmt.Errorf("%w: %w", ErrRejected, r.Err)
		}
	}
	return res[0].Entry, nil
}

func (n *fakeNode) OpenConnection(ctx context.Context, o Opening) (uint64, error) {
	if o.Stateful {
		return n.TakeOver(ctx, o)
	}
	return n.commit(ctx, fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: n.id}))
}

func (n *fakeNode) TakeOver(ctx context.Context, o Opening) (uint64, error) {
	so := &fsm.StatefulOpen{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: n.id, Protocol: o.Protocol, TokenHash: o.TokenHash}
	return n.commit(ctx, fsm.EncodeStatefulOpen(so))
}

func (n *fakeNode) CloseConnection(ctx context.Context, hub, connID, reason string) error {
	_, err := n.commit(ctx, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: connID, NodeID: n.id, Reason: reason}))
	return err
}

// ExpireConnections expires, in one proposal, the connections recorded on
// nodeID that keep does not claim.
func (n *fakeNode) ExpireConnections(ctx context.Context, nodeID, reason string, keep func(hub, connID string) bool) (int, error) {
	infos, err := n.ConnectionsOn(nodeID)
	if err != nil {
		return 0, err
	}
	var expiries []fsm.Command
	for _, i := range infos {
		if !keep(i.Hub, i.ConnID) {
			expiries = append(expiries, fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: i.Hub, ConnID: i.ConnID, NodeID: nodeID, Reason: reason}))
		}
	}
	if len(expiries) == 0 {
		return 0, nil
	}
	_, err = n.Propose(ctx, expiries)
	return len(expiries), err
}

// relayCmd encodes a relay invocation as a publish or a group change.
func relayCmd(hub, connID string, r Relay) fsm.Command {
	if r.Op == JoinGroup || r.Op == LeaveGroup {
		return fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: r.Name, Kind: fsm.MemberConnection, Member: connID}, r.Op == JoinGroup)
	}
	audience := map[RelayOp]fsm.Audience{SendToAll: fsm.ToAll, SendToGroup: fsm.ToGroups, SendToUser: fsm.ToUsers, SendToConnection: fsm.ToConnections}[r.Op]
	p := &fsm.Publish{Hub: hub, Audience: audience, Target: r.Target, Arguments: r.Arguments, MsgpackArguments: r.MsgpackArguments}
	if r.Op != SendToAll {
		p.Names = []string{r.Name}
	}
	return fsm.EncodePublish(p)
}

func (n *fakeNode) CheckRelay(hub, connID string, r Relay) error {
	return fsm.ValidateCommand(relayCmd(hub, connID, r))
}

func (n *fakeNode) Relay(ctx context.Context, hub, connID string, relays []Relay) ([]RelayOutcome, error) {
	cmds := make([]fsm.Command, len(relays))
	for i, r := range relays {
		cmds[i] = relayCmd(hub, connID, r)
	}
	res, err := n.Propose(ctx, cmds)
	if err != nil {
		return nil, err
	}
	out := make([]RelayOutcome, len(res))
	for i, r := range res {
		out[i].Index = r.Index
		if r.Err != nil {
			out[i].Err = fmt.Errorf("%w: %w", ErrRejected, r.Err)
		}
	}
	return out, nil
}

func (n *fakeNode) RecordInvocation(ctx context.Context, inv Invocation) (uint64, error) {
	rec := &fsm.Invocation{Hub: inv.Hub, ConnID: inv.ConnID, InvocationID: inv.InvocationID, ClientSeq: inv.ClientSeq, Error: inv.Error,
		AppValue: fsm.AppValue{HasValue: inv.HasValue || inv.Item || inv.Call, Item: inv.Item, StreamEnd: inv.StreamEnd, Call: inv.Call, Target: inv.Target, StreamStart: inv.StreamStart}}
	if rec.HasValue {
		rec.ValueFormat, rec.Value = byte(inv.Value.Format), inv.Value.Data
	}
	if inv.Relay != nil {
		rec.Inner = relayCmd(inv.Hub, inv.ConnID, *inv.Relay)
	}
	return n.commit(ctx, fsm.EncodeInvocation(rec))
}

func (n *fakeNode) Checkpoint(ctx context.Context, cps []Checkpoint) error {
	recs := make([]fsm.Checkpoint, len(cps))
	for i, cp := range cps {
		recs[i] = fsm.Checkpoint(cp)
	}
	_, err := n.commit(ctx, fsm.EncodeCheckpoints(n.id, recs))
	return err
}

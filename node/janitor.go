package node

import (
	"context"
	"fmt"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/signalr"
)

// Connection expiry for nodes that died: a node removes its own
// connections when they end, and at start-up the ones its earlier run
// held; but connections held by a node that is down stay recorded until
// someone decides they are gone. The leader decides, once, for the
// cluster: it probes the members, and the connections of a node it has not
// reached for -holder-timeout are expired through the log. (A stateful
// connection can resume on another node until then.)
const (
	DefaultHolderTimeout = 45 * time.Second
	probeTimeout         = time.Second
)

func (n *Node) janitorLoop() {
	tick := time.NewTicker(min(5*time.Second, n.cfg.HolderTimeout/3))
	defer tick.Stop()
	lastSeen := map[string]time.Time{}
	wasLeader := false
	for {
		select {
		case <-n.baseCtx.Done():
			return
		case now := <-tick.C:
			leader := n.raft.IsLeader()
			if leader && !wasLeader {
				lastSeen = map[string]time.Time{} // a new leader grants everyone a fresh grace period
			}
			wasLeader = leader
			if leader {
				n.expireDeadHolders(now, lastSeen)
			}
		}
	}
}

// expireConnectionsOf expires every connection a node holds.
func (n *Node) expireConnectionsOf(ctx context.Context, id, reason string) error {
	count, err := n.expireConnections(ctx, id, reason, nil)
	if err != nil || count == 0 {
		return err
	}
	n.log.Info("expired connections of a node", "node", id, "count", count, "reason", reason)
	return nil
}

// expireConnections is the one place that expires a node's connections:
// the janitor, POST /admin/remove and a restarted node's SignalR layer
// (for what its earlier run held) all use it. It lists the connections
// the replicated state records on node id and expires, in one proposal,
// those keep (nil: none) does not claim; keep is asked after the list is
// read, so a connection opened meanwhile is kept if it claims it. It
// returns how many expiries it proposed. A rejected expiry is no error: the
// holder closed that connection, or it resumed elsewhere, meanwhile.
func (n *Node) expireConnections(ctx context.Context, id, reason string, keep func(hub, connID string) bool) (int, error) {
	conns, err := n.fsm.ConnectionsOn(id)
	if err != nil {
		return 0, fmt.Errorf("list the connections on node %s: %w", id, err)
	}
	cmds := make([]fsm.Command, 0, len(conns))
	expiring := make([]fsm.ConnectionInfo, 0, len(conns))
	for _, c := range conns {
		if keep == nil || !keep(c.Hub, c.ConnID) {
			cmds = append(cmds, fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: c.Hub, ConnID: c.ConnID, NodeID: id, Reason: reason}))
			expiring = append(expiring, c)
		}
	}
	if len(cmds) == 0 {
		return 0, nil
	}
	results, err := n.proposer.Propose(ctx, cmds)
	if err != nil {
		return 0, fmt.Errorf("expire %d connections of node %s: %w", len(cmds), id, err)
	}
	for i, res := range results {
		if res.Err != nil {
			n.log.Debug("connection expiry rejected", "node", id, "err", res.Err)
			continue
		}
		if app := n.cfg.Application; app != nil && i < len(expiring) {
			// This node committed the close, so it tells the application
			// (the holder cannot: it is gone, or restarted without it).
			c := expiring[i]
			app.Disconnected(signalr.ConnInfo{Hub: c.Hub, ID: c.ConnID, UserID: c.UserID}, "Connection expired: "+reason)
		}
	}
	return len(cmds), nil
}

// expireDeadHolders probes the nodes that hold connections (including
// nodes no longer members) and expires the connections of those
// unreachable for -holder-timeout.
func (n *Node) expireDeadHolders(now time.Time, lastSeen map[string]time.Time) {
	held, err := n.fsm.Holders()
	if err != nil {
		return
	}
	members, err := n.raft.Members()
	if err != nil {
		return
	}
	holders := map[string]string{} // node id → http address ("" if not a member)
	for id := range held {
		holders[id] = ""
		if info, ok, err := n.fsm.Node(id); err == nil && ok && isMember(members, id) {
			holders[id] = info.HTTPAddr
		}
	}
	for id, addr := range holders {
		if id == n.cfg.ID || (addr != "" && n.probe(addr)) {
			lastSeen[id] = now
			continue
		}
		if _, ok := lastSeen[id]; !ok {
			lastSeen[id] = now // first noticed: the grace period starts
		}
		if now.Sub(lastSeen[id]) < n.cfg.HolderTimeout {
			continue
		}
		ctx, cancel := context.WithTimeout(n.baseCtx, n.cfg.WriteTimeout)
		if err := n.expireConnectionsOf(ctx, id, "holder unreachable"); err != nil {
			n.log.Warn("expire connections of an unreachable node", "node", id, "err", err)
		}
		cancel()
	}
}

// probe reports whether a node answers /healthz.
func (n *Node) probe(httpAddr string) bool {
	ctx, cancel := context.WithTimeout(n.baseCtx, probeTimeout)
	defer cancel()
	var health struct{}
	_, err := n.getJSON(ctx, n.fwd.url(httpAddr)+"/healthz", &health)
	return err == nil
}

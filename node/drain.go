package node

import "time"

// leadershipTransferTimeout bounds the hand-over of leadership when a
// leader stops: about two election timeouts.
const leadershipTransferTimeout = 3 * time.Second

// drain is the first step of stopping: the node says it is not ready (so
// balancers stop sending it clients), hands leadership to another voter if
// it leads, so writes pause for one round trip instead of an election
// timeout, then hands its stateful SignalR connections to the nodes their
// clients resume on. The streams, the other SignalR
// connections and Raft are stopped after it, by Close.
func (n *Node) drain() {
	n.ready.setDraining()
	// Leadership first: the takeovers of the stateful connections handed
	// over below are writes, and they must not go to a leader that is
	// about to stop.
	if n.raft != nil {
		start := time.Now()
		if err := n.raft.TransferLeadership(leadershipTransferTimeout); err != nil {
			n.log.Warn("hand over leadership before stopping", "err", err)
		} else if id, _ := n.raft.Leader(); id != "" && id != n.cfg.ID {
			n.log.Info("draining: another member leads now", "leader", id, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	if n.hubs != nil {
		n.hubs.Drain()
	}
}

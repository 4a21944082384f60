package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/backplane/backplane/fsm"
)

// Reads that decide an answer of the versioned API are linearized with
// the writes: a write is acknowledged only once it is committed, so the
// leader's commit index, asked after the acknowledgement, covers it. A
// node that answers such a read first learns the leader's commit index
// (its own when it leads; otherwise the leader's answer at progressPath,
// as readiness asks it) and waits until its state machine has applied
// that far. The last entries up to the commit index may be ones that
// never reach the state machine (a new leader's no-op): once Raft has
// applied them and the state machine stays quiet for barrierQuiet, the
// read goes ahead.

// barrierQuiet is how long the state machine may stay behind the commit
// index after Raft applied it before the read goes ahead.
const barrierQuiet = 50 * time.Millisecond

// readBarrier waits until this node has applied everything the leader had
// committed when it was called, at most the write timeout (503 then).
func (n *Node) readBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout)
	defer cancel()
	target, err := n.leaderCommitIndex(ctx)
	if err != nil {
		return err
	}
	for {
		changed := n.fsm.Changed()
		if n.fsm.AppliedIndex() >= target {
			return nil
		}
		wait := 10 * time.Millisecond
		rs := n.raft.Status()
		quiet := rs.AppliedIndex >= target
		if quiet {
			wait = barrierQuiet
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
			t.Stop()
		case <-t.C:
			if quiet {
				return nil
			}
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: this node did not apply the leader's commit index %d in time (applied %d)", ErrNoLeader, target, n.fsm.AppliedIndex())
		}
	}
}

// leaderCommitIndex is the leader's commit index, asked now.
func (n *Node) leaderCommitIndex(ctx context.Context) (uint64, error) {
	for {
		if n.raft.IsLeader() {
			return n.raft.Status().CommitIndex, nil
		}
		url, err := n.leaderURL()
		if err == nil {
			var p progressAnswer
			code, gerr := n.getJSON(ctx, url+progressPath, &p)
			if gerr == nil {
				return p.CommitIndex, nil
			}
			if code != http.StatusMisdirectedRequest && code != 0 {
				return 0, fmt.Errorf("ask the leader for its commit index: %w", gerr)
			}
			err = gerr
		}
		// No leader known, or it no longer leads: try again shortly.
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if errors.Is(err, ErrNoLeader) {
				return 0, err
			}
			return 0, fmt.Errorf("%w: ask the leader for its commit index: %v", ErrNoLeader, err)
		}
	}
}

// groupTTLInterval is how often the leader looks for a due user-to-group
// expiry.
const groupTTLInterval = 250 * time.Millisecond

// groupTTLLoop runs on every node and acts on the leader: once the
// earliest user-to-group expiry is due by the leader's clock, it proposes
// a tick, whose entry's stamp expires it on every replica, so an idle
// cluster does not wait for the next write.
func (n *Node) groupTTLLoop() {
	t := time.NewTicker(groupTTLInterval)
	defer t.Stop()
	for {
		select {
		case <-n.baseCtx.Done():
			return
		case <-t.C:
		}
		if !n.raft.IsLeader() {
			continue
		}
		at, ok, err := n.fsm.NextGroupExpiry()
		if err != nil || !ok || time.Now().UnixNano() < at {
			continue
		}
		ctx, cancel := context.WithTimeout(n.baseCtx, n.cfg.WriteTimeout)
		if _, err := n.proposer.ProposeOne(ctx, fsm.EncodeTick()); err != nil && n.baseCtx.Err() == nil {
			n.log.Warn("propose a tick to expire user-to-group memberships", "err", err)
		}
		cancel()
	}
}

package raftlog

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// TransferLeadership hands leadership to the most up-to-date other voter
// and waits for it, up to timeout. It does nothing when this node does not
// lead or has no other voter. A node that is about to stop calls it so the
// cluster does not wait out an election timeout.
func (r *Raft) TransferLeadership(timeout time.Duration) error {
	if r.raft.State() != raft.Leader {
		return nil
	}
	members, err := r.Members()
	if err != nil {
		return err
	}
	others := 0
	for _, m := range members {
		if m.ID != r.cfg.ID && m.Suffrage == raft.Voter.String() {
			others++
		}
	}
	if others == 0 {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- r.raft.LeadershipTransfer().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("raftlog: transfer leadership: %w", mapError(err))
		}
		r.log.Info("leadership transferred before stopping")
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("raftlog: transfer leadership: no new leader within %s", timeout)
	}
}

// ErrTransferring is returned by Apply while this leader hands leadership
// over: nothing was appended, so the write can go to the next leader.
var ErrTransferring = raft.ErrLeadershipTransferInProgress

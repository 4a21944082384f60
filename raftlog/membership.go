package raftlog

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one server of the Raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Suffrage string `json:"suffrage"`
}

// membershipTimeout bounds configuration changes.
const membershipTimeout = 10 * time.Second

// removedQuarantine is how long after removing a member this leader keeps
// its Raft address from being dialled or joined again.
//
// hashicorp/raft's replication to a removed member does not end at once:
// one last replication runs after its retry back-off (up to 10.24 s, after
// an RPC or dial that may itself take up to 10 s). When the member was
// wiped and started again at the same address meanwhile, that replication
// reached the new process: an old snapshot installed over newer state
// rolled its store back, and it then waited, not ready, for the next
// commit (seen in about one run of three of a remove, wipe and re-join).
// Refusing dials to the address ends that replication without reaching
// anyone, and refusing the re-join until it is over keeps it from landing
// after the new member's own replication began.
var removedQuarantine = 25 * time.Second

// ErrRecentlyRemoved: a join names the Raft address of a member this
// leader removed moments ago; join again once the wait it names is over.
var ErrRecentlyRemoved = errors.New("member removed moments ago")

// Members lists the current Raft configuration.
func (r *Raft) Members() ([]Member, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftlog: get configuration: %w", mapError(err))
	}
	servers := f.Configuration().Servers
	out := make([]Member, 0, len(servers))
	for _, s := range servers {
		out = append(out, Member{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: s.Suffrage.String()})
	}
	return out, nil
}

// Join adds a voter. It runs only on the leader (else ErrNotLeader). The
// same id with the same address is a no-op and returns added=false; an id
// already present with another address, or an address held by another id,
// is ErrConflict: remove the old member first.
func (r *Raft) Join(id, raftAddr string) (added bool, err error) {
	if r.raft.State() != raft.Leader {
		return false, ErrNotLeader
	}
	members, err := r.Members()
	if err != nil {
		return false, err
	}
	for _, m := range members {
		switch {
		case m.ID == id && m.RaftAddr == raftAddr:
			return false, nil
		case m.ID == id:
			return false, fmt.Errorf("%w: id %q is already a member at %s", ErrConflict, id, m.RaftAddr)
		case m.RaftAddr == raftAddr:
			return false, fmt.Errorf("%w: address %s already belongs to member %q", ErrConflict, raftAddr, m.ID)
		}
	}
	if until := r.streams.blockedUntil(raft.ServerAddress(raftAddr)); !until.IsZero() {
		return false, fmt.Errorf("%w: %s left the cluster moments ago and the leader may still be sending it its last entries; join again in %s",
			ErrRecentlyRemoved, raftAddr, time.Until(until).Round(time.Second))
	}
	f := r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout)
	if err := f.Error(); err != nil {
		return false, fmt.Errorf("raftlog: add voter %s: %w", id, mapError(err))
	}
	r.log.Info("member joined", "id", id, "raft_addr", raftAddr)
	return true, nil
}

// Remove removes a member. It runs only on the leader (else ErrNotLeader);
// an id that is not a member is ErrUnknownMember. A leader may remove
// itself: it steps down and the others elect a new leader.
func (r *Raft) Remove(id string) error {
	if r.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	members, err := r.Members()
	if err != nil {
		return err
	}
	addr := ""
	for _, m := range members {
		if m.ID == id {
			addr = m.RaftAddr
		}
	}
	if addr == "" {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	f := r.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout)
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftlog: remove %s: %w", id, mapError(err))
	}
	if id != r.cfg.ID {
		r.streams.block(raft.ServerAddress(addr), time.Now().Add(removedQuarantine))
	}
	r.log.Info("member removed", "id", id)
	return nil
}

// IsMember reports whether this node is in the current configuration.
func (r *Raft) IsMember() bool {
	members, err := r.Members()
	if err != nil {
		return false
	}
	for _, m := range members {
		if m.ID == r.cfg.ID {
			return true
		}
	}
	return false
}

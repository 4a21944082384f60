package raftlog

import (
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
	found := false
	for _, m := range members {
		found = found || m.ID == id
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	f := r.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout)
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftlog: remove %s: %w", id, mapError(err))
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

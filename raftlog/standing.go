package raftlog

import "github.com/hashicorp/raft"

// Standing is where this node stands in the cluster's configuration.
type Standing int

const (
	// StandingMember: the latest configuration includes this node.
	StandingMember Standing = iota
	// StandingNotJoined: this node has no configuration yet; it waits to be
	// added by a leader.
	StandingNotJoined
	// StandingRemoved: the latest configuration does not include this node.
	StandingRemoved
	// StandingShutdown: Raft has stopped on this node (a leader that
	// removed itself stops; so does a node shutting down).
	StandingShutdown
)

// String names the standing for logs and errors.
func (s Standing) String() string {
	switch s {
	case StandingMember:
		return "member"
	case StandingNotJoined:
		return "not joined yet"
	case StandingRemoved:
		return "removed from the cluster"
	case StandingShutdown:
		return "raft is shut down"
	}
	return "unknown"
}

// Standing reports where this node stands. It asks Raft for its latest
// configuration, so callers use it on error paths, not per request.
func (r *Raft) Standing() Standing {
	if r.raft.State() == raft.Shutdown {
		return StandingShutdown
	}
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return StandingShutdown
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return StandingNotJoined
	}
	for _, s := range servers {
		if string(s.ID) == r.cfg.ID {
			return StandingMember
		}
	}
	return StandingRemoved
}

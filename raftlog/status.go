package raftlog

import (
	"strconv"

	"github.com/hashicorp/raft"
)

// Status is a point-in-time view of this member's Raft state.
type Status struct {
	State        string // Leader, Follower, Candidate or Shutdown
	Term         uint64
	LeaderID     string
	LeaderAddr   string
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
}

// Status reads this member's Raft state.
func (r *Raft) Status() Status {
	addr, id := r.raft.LeaderWithID()
	stats := r.raft.Stats()
	return Status{
		State:        r.raft.State().String(),
		Term:         parseUint(stats["term"]),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		LastIndex:    r.raft.LastIndex(),
		CommitIndex:  parseUint(stats["commit_index"]),
		AppliedIndex: r.raft.AppliedIndex(),
	}
}

// IsLeader reports whether this member is the leader.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the leader's id and Raft address, empty if unknown.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderChanges delivers a value each time the leader changes (including to
// none). The channel is buffered; slow readers miss intermediate changes,
// never the fact that something changed.
func (r *Raft) LeaderChanges() <-chan struct{} {
	obs := make(chan raft.Observation, 16)
	out := make(chan struct{}, 1)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.raft.RegisterObserver(observer)
	r.mu.Lock()
	r.observers = append(r.observers, observerChan{observer, obs})
	r.mu.Unlock()
	go func() {
		for range obs {
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

// Snapshot asks Raft to take a snapshot now and compact its log.
func (r *Raft) Snapshot() error { return mapError(r.raft.Snapshot().Error()) }

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

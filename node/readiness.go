package node

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/backplane/backplane/raftlog"
)

// Readiness means caught up. A follower's own commit index is only what
// the leader has managed to send it, so a follower that receives nothing
// (a full disk, a wedged connection, a restart far behind) would look
// caught up by it. Instead every node samples the leader's commit index
// every readyProbeInterval (the leader reads its own; followers ask the
// leader at progressPath) and is ready when it has applied everything the
// leader had committed readyLag earlier. A follower that has not heard
// the leader's answer for readyStale is not ready either.
const (
	progressPath       = "/internal/v1/progress"
	readyProbeInterval = 250 * time.Millisecond
	// readyLag is the lag a ready node may have: it must have applied what
	// the leader had committed this long ago.
	readyLag   = 500 * time.Millisecond
	readyStale = 2 * time.Second
	// readySamples keeps readyStale's worth of samples.
	readySamples = int(readyStale/readyProbeInterval) + 1
)

// progressSample is the leader's commit index at a time.
type progressSample struct {
	commit uint64
	at     time.Time
}

// readiness holds the recent samples of the leader's commit index.
type readiness struct {
	mu      sync.Mutex
	samples []progressSample // oldest first, at most readySamples
	// draining is set when the node stops serving before shutdown.
	draining bool
}

func (r *readiness) add(s progressSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(s)
}

// addIfOlder adds s when the newest sample is older than age.
func (r *readiness) addIfOlder(s progressSample, age time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 || s.at.Sub(r.samples[len(r.samples)-1].at) > age {
		r.addLocked(s)
	}
}

func (r *readiness) addLocked(s progressSample) {
	if len(r.samples) == readySamples {
		copy(r.samples, r.samples[1:])
		r.samples = r.samples[:readySamples-1]
	}
	r.samples = append(r.samples, s)
}

// target is the commit index a node must have applied at now to be ready:
// the newest sample at least readyLag old, or the oldest there is. ok is
// false when the newest sample is older than readyStale.
func (r *readiness) target(now time.Time) (commit uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 || now.Sub(r.samples[len(r.samples)-1].at) > readyStale {
		return 0, false
	}
	commit = r.samples[0].commit
	for _, s := range r.samples {
		if now.Sub(s.at) >= readyLag {
			commit = s.commit
		}
	}
	return commit, true
}

func (r *readiness) setDraining() {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
}

func (r *readiness) isDraining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.draining
}

// readinessLoop samples the leader's commit index until the node stops.
func (n *Node) readinessLoop() {
	n.repeatOnLeaderChange(readyProbeInterval, n.sampleProgress) // a new leader: ask it at once
}

// repeatOnLeaderChange runs fn at once, then again at every change of
// leader and every interval, until the node stops.
func (n *Node) repeatOnLeaderChange(interval time.Duration, fn func()) {
	changes := n.raft.LeaderChanges()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		fn()
		select {
		case <-n.baseCtx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

func (n *Node) sampleProgress() {
	if n.raft.IsLeader() {
		n.ready.add(progressSample{commit: n.raft.Status().CommitIndex, at: time.Now()})
		return
	}
	url, err := n.leaderURL()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.baseCtx, readyStale)
	defer cancel()
	start := time.Now()
	var p progressAnswer
	if _, err := n.getJSON(ctx, url+progressPath, &p); err != nil {
		n.log.Debug("ask the leader for its commit index", "err", err)
		return
	}
	n.ready.add(progressSample{commit: p.CommitIndex, at: start})
}

// progressAnswer is the leader's answer at progressPath.
type progressAnswer struct {
	Leader      string `json:"leader"`
	Term        uint64 `json:"term"`
	CommitIndex uint64 `json:"commit_index"`
}

// handleProgress answers a member's question for the leader's commit
// index; a node that does not lead answers 421.
func (n *Node) handleProgress(w http.ResponseWriter, r *http.Request) {
	rs := n.raft.Status()
	if rs.State != "Leader" {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	writeJSON(w, http.StatusOK, progressAnswer{Leader: n.cfg.ID, Term: rs.Term, CommitIndex: rs.CommitIndex})
}

// notReadyReason says why the node is not ready, or "" when it is.
func (n *Node) notReadyReason(rs raftlog.Status) string {
	switch {
	case n.ready.isDraining():
		return "draining before shutdown"
	case rs.State == "Shutdown":
		return "raft is shut down"
	case !n.raft.IsMember():
		return "not a member of a cluster yet"
	case rs.LeaderID == "":
		return "no known leader"
	}
	if rs.State == "Leader" {
		// The leader's own commit index needs no question: a sample now
		// covers the time before the loop's first one.
		n.ready.addIfOlder(progressSample{commit: rs.CommitIndex, at: time.Now()}, readyProbeInterval)
	}
	target, ok := n.ready.target(time.Now())
	switch {
	case !ok:
		return fmt.Sprintf("no recent answer from the leader %s", rs.LeaderID)
	case rs.AppliedIndex < target:
		// Raft's own applied index: it counts the no-op entry a new leader
		// appends, which never reaches the state machine.
		return fmt.Sprintf("catching up with the log: applied %d, the leader had committed %d", rs.AppliedIndex, target)
	}
	return ""
}

// notReady is notReadyReason for the current state.
func (n *Node) notReady() string { return n.notReadyReason(n.raft.Status()) }

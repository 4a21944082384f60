package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/backplane/backplane/fsm"
)

// The cluster's feature level (see fsm.Level): the leader raises it once
// every member says, at levelPath, that it knows the new level; a member of
// an older version does not answer there (404), so the level waits until
// it is upgraded. A join below the cluster's level is refused
// (handleJoin).

// levelPath is the node-to-node route where a member says its fsm.Level.
const levelPath = "/internal/v1/level"

// levelAnswer is a member's answer at levelPath.
type levelAnswer struct {
	Level uint64 `json:"level"`
}

func (n *Node) handleLevel(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, levelAnswer{Level: fsm.Level})
}

// levelCheckInterval is how often the leader looks at the cluster's
// feature level (a read of the store); while it can be raised, the
// members are asked at most every levelProbeInterval. A new cluster's
// first leader raises it at once: it has no other member to ask.
const (
	levelCheckInterval = 250 * time.Millisecond
	levelProbeInterval = time.Second
)

// levelLoop raises the cluster's feature level while this node leads.
func (n *Node) levelLoop() {
	tick := time.NewTicker(levelCheckInterval)
	defer tick.Stop()
	var lastProbe time.Time
	for {
		if n.raft.IsLeader() && n.fsm.ClusterLevel() < fsm.Level && time.Since(lastProbe) >= levelProbeInterval {
			lastProbe = time.Now()
			n.raiseClusterLevel()
		}
		select {
		case <-n.baseCtx.Done():
			return
		case <-tick.C:
		}
	}
}

// raiseClusterLevel proposes the highest level every member knows, if it
// is above the cluster's. The leader runs it from levelLoop; a
// member it cannot ask keeps the level where it is.
func (n *Node) raiseClusterLevel() {
	have := n.fsm.ClusterLevel()
	if have >= fsm.Level {
		return
	}
	members, err := n.raft.Members()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.baseCtx, 2*probeTimeout)
	defer cancel()
	lowest := uint64(fsm.Level)
	for _, m := range members {
		if m.ID == n.cfg.ID {
			continue
		}
		url, ok := hubCluster{n}.NodeURL(m.ID)
		if !ok {
			return
		}
		var a levelAnswer
		if _, err := n.getJSON(ctx, url+levelPath, &a); err != nil {
			n.log.Debug("ask a member for its feature level", "member", m.ID, "err", err)
			return
		}
		lowest = min(lowest, a.Level)
	}
	if lowest <= have {
		return
	}
	if _, err := n.proposer.ProposeOne(ctx, fsm.EncodeClusterLevel(lowest)); err != nil {
		n.log.Warn("raise the cluster's feature level", "level", lowest, "err", err)
		return
	}
	n.log.Info("raised the cluster's feature level", "from", have, "to", lowest)
}

// checkJoinerLevel refuses a member that would not know the cluster's
// feature level. A joiner of this version or later says its level in the
// join request; a join posted by hand may not, so the joiner itself is
// asked at levelPath (a version before feature levels answers 404 there).
func (n *Node) checkJoinerLevel(ctx context.Context, req joinRequest) error {
	have := n.fsm.ClusterLevel()
	if have == 0 || req.FeatureLevel >= have {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*probeTimeout)
	defer cancel()
	scheme := "http://"
	if n.peers.Scheme() == "https" {
		scheme = "https://"
	}
	var a levelAnswer
	if _, err := n.getJSON(ctx, scheme+req.HTTPAddr+levelPath, &a); err != nil {
		return fmt.Errorf("%w: the cluster runs at feature level %d and %q did not say which it knows (%v): run a version that knows level %d on it", errConflict, have, req.ID, err, have)
	}
	if a.Level < have {
		return fmt.Errorf("%w: the cluster runs at feature level %d and %q knows only level %d: run a version that knows level %d on it", errConflict, have, req.ID, a.Level, have)
	}
	return nil
}

// gateHubNames answers 404, with the reason, a route naming a hub that
// the cluster's feature level does not allow yet (a name with '-' while
// a member of an older version remains), rather than a rejection deeper
// down.
func (n *Node) gateHubNames(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hub := hubSegment(r.URL.Path); hub != "" && fsm.ValidateHub(hub) == nil {
			// Most names need no level: only those read the cluster's
			// level (a bbolt read) on the request path.
			if need := fsm.HubLevel(hub); need > 0 {
				if have := n.fsm.ClusterLevel(); need > have {
					writeError(w, r, errNotFoundf("hub %q: names with '-' are served once every member of the cluster runs a version that knows them (cluster feature level %d, needed %d)", hub, have, need))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hubSegment is the hub a route names, or "".
func hubSegment(path string) string {
	for _, p := range hubRoutePrefixes {
		if rest, ok := strings.CutPrefix(path, p); ok {
			seg, _, _ := strings.Cut(rest, "/")
			return seg
		}
	}
	return ""
}

package node

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// removedPath is where a leader tells a member it removed that it is no
// longer one. hashicorp/raft stops replicating to a removed follower, often
// before the entry that removes it reaches it, so without this word the
// follower would keep believing it is a member — forwarding writes and
// serving reads as one.
const removedPath = "/internal/v1/removed"

// tellRemoved tells the removed member at baseURL, best effort.
func (n *Node) tellRemoved(baseURL, id string) {
	ctx, cancel := context.WithTimeout(n.baseCtx, 5*time.Second)
	defer cancel()
	body := fmt.Appendf(nil, `{"id":%q,"by":%q}`, id, n.cfg.ID)
	status, answer, err := n.postAdmin(ctx, baseURL+removedPath, body)
	if err != nil || status != http.StatusOK {
		n.log.Info("could not tell a removed member it was removed (it finds out when it restarts)", "node", id, "status", status, "answer", answer, "err", err)
	}
}

// handleRemoved stops Raft on a member that the leader removed, as
// hashicorp/raft's ShutdownOnRemove does for a leader that removed itself:
// the node then answers writes with "not a member" and is not ready.
func (n *Node) handleRemoved(w http.ResponseWriter, r *http.Request) {
	var req struct{ ID, By string }
	if _, err := readJSON(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.ID != n.cfg.ID {
		writeError(w, r, errBadRequestf("this is node %q, not %q", n.cfg.ID, req.ID))
		return
	}
	n.log.Warn("removed from the cluster: stopping Raft; wipe the data directory before joining again", "by", req.By)
	go func() {
		if err := n.raft.Shutdown(); err != nil {
			n.log.Warn("stop Raft after removal", "err", err)
		}
	}()
	writeJSON(w, http.StatusOK, map[string]string{"stopping": n.cfg.ID})
}

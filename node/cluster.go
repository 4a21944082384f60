package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/raftlog"
)

const announcePath = "/internal/v1/announce"

// joinRequest is the body of POST /admin/join.
type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// FeatureLevel is the joiner's fsm.Level (absent from versions before
	// feature levels: 0). A cluster refuses a member below its level.
	FeatureLevel uint64 `json:"feature_level,omitempty"`
}

func (j *joinRequest) validate() error {
	if !nodeIDPattern.MatchString(j.ID) {
		return fmt.Errorf("%w: id %q: use 1 to 64 letters, digits, '.', '_' or '-'", errBadRequest, j.ID)
	}
	for _, a := range []struct{ name, addr string }{{"raft_addr", j.RaftAddr}, {"http_addr", j.HTTPAddr}} {
		if err := checkAdvertise(a.addr); err != nil {
			return fmt.Errorf("%w: %s %q: %v", errBadRequest, a.name, a.addr, err)
		}
	}
	return nil
}

// joinCluster asks the -join addresses, in turn, to add this node, with
// backoff, until one succeeds, a conflict makes it hopeless, or the join
// timeout passes.
func (n *Node) joinCluster(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	body, _ := json.Marshal(joinRequest{ID: n.cfg.ID, RaftAddr: n.RaftAddr(), HTTPAddr: n.advertiseHTTP, FeatureLevel: fsm.Level})
	backoff := 100 * time.Millisecond
	var lastErr error
	for {
		for _, base := range n.cfg.Join {
			if n.peers.Scheme() == "https" {
				base = "https://" + strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
			}
			status, answer, err := n.postAdmin(ctx, base+"/admin/join", body)
			switch {
			case err != nil:
				lastErr = err
			case status == http.StatusOK:
				n.log.Info("joined the cluster", "via", base)
				return nil
			case status == http.StatusConflict:
				return fmt.Errorf("join via %s refused: %s (remove the old member with POST /admin/remove, or pick another -id)", base, answer)
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				return fmt.Errorf("join via %s refused: %s (check -admin-token, and -peer-tls-* or -cluster-key)", base, answer)
			default:
				lastErr = fmt.Errorf("join via %s: status %d: %s", base, status, answer)
			}
			n.log.Info("join attempt failed; retrying", "via", base, "err", lastErr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("could not join the cluster through %v within -join-timeout %s: %w", n.cfg.Join, n.cfg.JoinTimeout, lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (n *Node) postAdmin(ctx context.Context, url string, body []byte) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.fwd.do(req, body)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(bytes.TrimSpace(answer)), nil
}

// readJSON decodes a small JSON request body.
func readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %v", errBadRequest, err)
	}
	return body, nil
}

// toLeader forwards an admin request to the leader when this node does not
// lead. It reports whether the request was handled (forwarded or failed).
func (n *Node) toLeader(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if n.raft.IsLeader() {
		return false
	}
	if r.Header.Get(forwardedHeader) != "" {
		writeError(w, r, fmt.Errorf("%w: this node stopped leading while the request was forwarded", raftlog.ErrNotLeader))
		return true
	}
	url, err := n.waitLeaderURL(r.Context())
	if err == nil {
		err = n.fwd.forwardJSON(r.Context(), w, url, r.URL.Path, body)
		if err == nil {
			return true
		}
	}
	writeError(w, r, err)
	return true
}

// waitLeaderURL waits up to the write timeout for a known leader.
func (n *Node) waitLeaderURL(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout)
	defer cancel()
	for {
		url, err := n.leaderURL()
		if err == nil || n.raft.IsLeader() {
			return url, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// handleJoin adds a member: POST /admin/join {"id","raft_addr","http_addr"}.
// The same id and addresses again is a no-op; an id or Raft address held by
// another member is 409. The same id and Raft address with a new HTTP
// address updates the HTTP address.
func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	body, err := readJSON(w, r, &req)
	if err == nil {
		err = req.validate()
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if n.toLeader(w, r, body) {
		return
	}
	if err := n.checkJoinerLevel(r.Context(), req); err != nil {
		writeError(w, r, err)
		return
	}
	nodes, err := n.fsm.Nodes()
	if err != nil {
		writeError(w, r, err)
		return
	}
	for _, other := range nodes {
		if other.ID != req.ID && other.HTTPAddr == req.HTTPAddr {
			writeError(w, r, fmt.Errorf("%w: http_addr %s already belongs to member %q", errConflict, req.HTTPAddr, other.ID))
			return
		}
	}
	added, err := n.raft.Join(req.ID, req.RaftAddr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	info := fsm.NodeInfo{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}
	if err := n.proposeNodeInfo(r.Context(), info); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Backplane-Served-By", n.cfg.ID)
	writeJSON(w, http.StatusOK, map[string]any{"added": added, "member": info})
}

func (n *Node) proposeNodeInfo(ctx context.Context, info fsm.NodeInfo) error {
	current, ok, err := n.fsm.Node(info.ID)
	if err != nil || (ok && current == info) {
		return err
	}
	_, err = n.proposer.ProposeOne(ctx, fsm.EncodeNodeInfo(&info))
	return err
}

// handleRemove removes a member: POST /admin/remove {"id"}.
func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	body, err := readJSON(w, r, &req)
	if err == nil && req.ID == "" {
		err = fmt.Errorf("%w: id is required", errBadRequest)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if n.toLeader(w, r, body) {
		return
	}
	members, err := n.raft.Members()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !isMember(members, req.ID) {
		writeError(w, r, fmt.Errorf("%w: %q", raftlog.ErrUnknownMember, req.ID))
		return
	}
	// Expire its connections (its clients must reconnect elsewhere) and
	// forget its addresses first: a leader removing itself cannot commit
	// anything afterwards. A failed expiry is retried by the janitor.
	var removedURL string
	if info, ok, err := n.fsm.Node(req.ID); err == nil && ok && info.HTTPAddr != "" && req.ID != n.cfg.ID {
		removedURL = n.fwd.url(info.HTTPAddr)
	}
	if err := n.expireConnectionsOf(r.Context(), req.ID, "holder removed"); err != nil {
		n.log.Warn("expire connections of a removed node", "node", req.ID, "err", err)
	}
	if _, err := n.proposer.ProposeOne(r.Context(), fsm.EncodeNodeRemove(req.ID)); err != nil {
		writeError(w, r, err)
		return
	}
	if err := n.raft.Remove(req.ID); err != nil {
		writeError(w, r, err)
		return
	}
	if removedURL != "" {
		go n.tellRemoved(removedURL, req.ID)
	}
	w.Header().Set("Backplane-Served-By", n.cfg.ID)
	writeJSON(w, http.StatusOK, map[string]any{"removed": req.ID})
}

func isMember(members []raftlog.Member, id string) bool {
	for _, m := range members {
		if m.ID == id {
			return true
		}
	}
	return false
}

// announceLoop keeps this node's replicated addresses current: after a
// bootstrap, and after a restart with a new HTTP address.
func (n *Node) announceLoop() {
	n.repeatOnLeaderChange(2*time.Second, n.announce)
}

func (n *Node) announce() {
	self := n.self()
	current, ok, err := n.fsm.Node(self.ID)
	if err != nil || (ok && current == self) {
		return
	}
	ctx, cancel := context.WithTimeout(n.baseCtx, n.cfg.WriteTimeout)
	defer cancel()
	if n.raft.IsLeader() {
		if err := n.proposeNodeInfo(ctx, self); err != nil {
			n.log.Warn("announce own addresses", "err", err)
		}
		return
	}
	url, err := n.leaderURL()
	if err != nil {
		return
	}
	body, _ := json.Marshal(self)
	status, answer, err := n.postAdmin(ctx, url+announcePath, body)
	if err != nil || status != http.StatusOK {
		n.log.Debug("announce own addresses", "status", status, "answer", answer, "err", err)
	}
}

// handleAnnounce updates a current member's HTTP address. Unlike join it
// never adds a member, so a removed node cannot bring itself back.
func (n *Node) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	var info fsm.NodeInfo
	if _, err := readJSON(w, r, &info); err != nil {
		writeError(w, r, err)
		return
	}
	if !n.raft.IsLeader() {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	members, err := n.raft.Members()
	if err != nil {
		writeError(w, r, err)
		return
	}
	for _, m := range members {
		if m.ID == info.ID && m.RaftAddr == info.RaftAddr {
			if err := n.proposeNodeInfo(r.Context(), info); err != nil {
				writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, info)
			return
		}
	}
	writeError(w, r, fmt.Errorf("%w: %q at %s is not a member", errNotFound, info.ID, info.RaftAddr))
}

package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/peer"
	"github.com/backplane/backplane/raftlog"
)

// The node-to-node write path. A follower sends a batch of encoded commands
// in one request to the leader, which commits them (usually sharing an
// entry with other batches) and answers one result per command.
const (
	applyPath        = "/internal/v1/apply"
	commandsMIMEType = "application/vnd.backplane.commands"
	// maxForwardBody bounds a forwarded batch on the receiving side.
	maxForwardBody = 8 << 20
)

// forwarder is the client side of node-to-node calls: every one goes
// through the peer client, which proves this node is a member (mutual TLS
// or the cluster key). Only when members do not authenticate each other
// (all on loopback, or -insecure-cluster) does it send the admin token.
type forwarder struct {
	peers *peer.Auth
	token string
}

func newForwarder(peers *peer.Auth, token string) *forwarder {
	return &forwarder{peers: peers, token: token}
}

// url is a member's base URL for its advertised HTTP address.
func (f *forwarder) url(httpAddr string) string { return f.peers.URL(httpAddr) }

// do sends a node-to-node request; body is its exact body (nil for none).
func (f *forwarder) do(req *http.Request, body []byte) (*http.Response, error) {
	if f.peers.Mode() == peer.ModeNone && f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	if body == nil {
		body = []byte{}
	}
	return f.peers.Do(req, body)
}

type wireResult struct {
	Entry     uint64 `json:"entry"`
	Index     uint64 `json:"index,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
}

// sendBatch sends cmds to the leader at baseURL. Errors after which nothing can
// have been appended wrap errRetryable; others wrap ErrUncertain.
func (f *forwarder) sendBatch(ctx context.Context, baseURL string, cmds []fsm.Command) ([]fsm.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+applyPath, nil)
	if err != nil {
		return nil, fmt.Errorf("forward to leader: %w", err)
	}
	req.Header.Set("Content-Type", commandsMIMEType)
	resp, err := f.do(req, fsm.EncodeBatch(cmds))
	if err != nil {
		if peer.IsDialError(err) {
			return nil, retryable(fmt.Errorf("forward to leader %s: %w", baseURL, err))
		}
		return nil, fmt.Errorf("%w: forward to leader %s: %w", ErrUncertain, baseURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		return nil, fmt.Errorf("%w: read leader answer: %w", ErrUncertain, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusMisdirectedRequest:
		return nil, retryable(fmt.Errorf("%s is no longer the leader", baseURL))
	case http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: leader %s: %s", ErrUncertain, baseURL, bytes.TrimSpace(body))
	case http.StatusInsufficientStorage:
		return nil, fmt.Errorf("%w: leader %s: %s", ErrStorageFull, baseURL, bytes.TrimSpace(body))
	default:
		return nil, fmt.Errorf("forward to leader %s: status %d: %s", baseURL, resp.StatusCode, bytes.TrimSpace(body))
	}
	var out struct {
		Results []wireResult `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%w: decode leader answer: %w", ErrUncertain, err)
	}
	results := make([]fsm.Result, len(out.Results))
	for i, r := range out.Results {
		results[i] = fsm.Result{Index: r.Index, Duplicate: r.Duplicate, Entry: r.Entry}
		if r.Error != "" {
			results[i].Err = fmt.Errorf("%w: %s", fsm.ErrInvalidCommand, r.Error)
		}
	}
	return results, nil
}

// forwardJSON relays an admin request to the leader and copies its answer.
func (f *forwarder) forwardJSON(ctx context.Context, w http.ResponseWriter, baseURL, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forwardedHeader, "1")
	resp, err := f.do(req, body)
	if err != nil {
		return fmt.Errorf("forward to leader %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.Header().Set("Backplane-Served-By", resp.Header.Get("Backplane-Served-By"))
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	return err
}

// forwardedHeader marks a request that was already forwarded once, so a
// stale view of the leader can never bounce a request around.
const forwardedHeader = "Backplane-Forwarded"

// handleApply is the leader's side of applyPath.
func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
	if err != nil {
		writeError(w, r, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	cmds, err := fsm.DecodeBatch(body)
	if err != nil {
		writeError(w, r, fmt.Errorf("%w: forwarded batch: %w", errBadRequest, err))
		return
	}
	// Even a member's batch is decoded and checked before it is proposed:
	// nothing malformed may reach the log.
	if err := validateCommands(cmds); err != nil {
		writeError(w, r, fmt.Errorf("%w: forwarded batch: %w", errBadRequest, err))
		return
	}
	results, err := n.proposer.proposeLocal(r.Context(), cmds)
	if errors.Is(err, raftlog.ErrNotLeader) {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]wireResult, len(results))
	for i, res := range results {
		out[i] = wireResult{Index: res.Index, Duplicate: res.Duplicate, Entry: res.Entry}
		if res.Err != nil {
			out[i].Error = res.Err.Error()
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

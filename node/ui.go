package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/backplane/backplane/webui"
)

// memberProbeTimeout bounds each call /admin/cluster makes to a member, so
// the dashboard keeps refreshing while a member is down or hung.
const memberProbeTimeout = time.Second

// uiRoutes adds the browser pages (package webui) and the two endpoints
// they read: GET /v1/info (public) and GET /admin/cluster (admin).
func (n *Node) uiRoutes(mux *http.ServeMux) {
	webui.Register(mux)
	mux.HandleFunc("GET /v1/info", n.handleInfo)
	mux.HandleFunc("GET /admin/cluster", n.requireAdmin(n.handleCluster))
}

// infoMember is a member's id and client address in GET /v1/info.
type infoMember struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
}

// Info is the body of GET /v1/info: which node answered, and where the
// other members are, so a client can tell where it is connected and where
// else it could resume.
type Info struct {
	ID          string       `json:"id"`
	HTTPAddr    string       `json:"http_addr"`
	Leader      string       `json:"leader"`
	LastMessage uint64       `json:"last_message"`
	Members     []infoMember `json:"members"`
}

// handleInfo answers GET /v1/info. It is public: it tells nothing a client
// of the node could not learn otherwise (no Raft addresses, no counters
// beyond the last message index every reader sees). The chat page served
// by one member asks the leader's for the end of the log, so pages of the
// members, and origins named in -allowed-origins, may read it
// cross-origin; no wildcard is ever sent.
func (n *Node) handleInfo(w http.ResponseWriter, r *http.Request) {
	leader, _ := n.raft.Leader()
	info := Info{ID: n.cfg.ID, HTTPAddr: n.advertiseHTTP, Leader: leader, LastMessage: n.fsm.LastMessage(), Members: []infoMember{}}
	if members, err := n.raft.Members(); err == nil {
		for _, m := range members {
			im := infoMember{ID: m.ID}
			if ni, ok, err := n.fsm.Node(m.ID); err == nil && ok {
				im.HTTPAddr = ni.HTTPAddr
			}
			info.Members = append(info.Members, im)
		}
	}
	if origin := r.Header.Get("Origin"); origin != "" && n.infoOriginAllowed(origin, info.Members) {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
	w.Header().Add("Vary", "Origin")
	writeJSON(w, http.StatusOK, info)
}

// infoOriginAllowed: the origin is a member's page or listed explicitly in
// -allowed-origins (a "*" there does not count).
func (n *Node) infoOriginAllowed(origin string, members []infoMember) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, m := range members {
		if m.HTTPAddr != "" && strings.EqualFold(m.HTTPAddr, u.Host) {
			return true
		}
	}
	for _, o := range n.cfg.AllowedOrigins {
		if o != "*" && strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// ClusterMember is one member in GET /admin/cluster: its place in the Raft
// configuration, whether the answering node could reach it, and the
// member's own /admin/status when it could.
type ClusterMember struct {
	memberStatus
	// Self marks the answering node.
	Self bool `json:"self"`
	// Reachable: the member answered its /admin/status.
	Reachable bool `json:"reachable"`
	// Ready is the member's /readyz; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Error says why the member is unreachable or its status is missing.
	Error string `json:"error,omitempty"`
	// RTTMillis is how long the member took to answer, in milliseconds.
	RTTMillis float64 `json:"rtt_ms"`
	Status    *Status `json:"status,omitempty"`
}

// ClusterView is the body of GET /admin/cluster: the answering node's
// status and every member as seen from it.
type ClusterView struct {
	ID      string          `json:"id"`
	Time    time.Time       `json:"time"`
	Status  Status          `json:"status"`
	Members []ClusterMember `json:"members"`
}

// handleCluster answers GET /admin/cluster: this node's status plus each
// member's /admin/status and /readyz, fetched in parallel with a short
// timeout. A member that does not answer is marked unreachable; the view
// is still 200.
func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status()
	if err != nil {
		writeError(w, r, err)
		return
	}
	view := ClusterView{ID: st.ID, Time: time.Now().UTC(), Status: st, Members: make([]ClusterMember, len(st.Members))}
	var wg sync.WaitGroup
	for i, m := range st.Members {
		cm := &view.Members[i]
		cm.memberStatus = m
		if m.ID == n.cfg.ID {
			cm.Self, cm.Reachable, cm.Status = true, true, &view.Status
			cm.NotReady = n.notReadyReason(n.raft.Status())
			cm.Ready = cm.NotReady == ""
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.probeMember(r.Context(), cm)
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, view)
}

// probeMember fills cm from the member's /admin/status and /readyz.
func (n *Node) probeMember(ctx context.Context, cm *ClusterMember) {
	if cm.HTTPAddr == "" {
		cm.Error = "HTTP address not known yet"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, memberProbeTimeout)
	defer cancel()
	base := n.fwd.url(cm.HTTPAddr)
	var ready struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	readyDone := make(chan error, 1)
	go func() {
		_, err := n.getJSON(ctx, base+"/readyz", &ready)
		readyDone <- err
	}()
	start := time.Now()
	var st Status
	code, err := n.getJSON(ctx, base+"/admin/status", &st)
	cm.RTTMillis = float64(time.Since(start).Microseconds()) / 1000
	switch {
	case err != nil && code == 0:
		cm.Error = probeError(err)
	case err != nil:
		cm.Reachable, cm.Error = true, err.Error()
	case st.ID != cm.ID:
		cm.Reachable, cm.Error = true, fmt.Sprintf("%s answers as %q", cm.HTTPAddr, st.ID)
	default:
		cm.Reachable, cm.Status = true, &st
	}
	if err := <-readyDone; err == nil || ready.Reason != "" {
		cm.Ready, cm.NotReady = ready.Ready, ready.Reason
	} else if cm.Reachable {
		cm.NotReady = probeError(err)
	}
}

// probeError says briefly why a member did not answer.
func probeError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", memberProbeTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// getJSON GETs url as a node-to-node call (through the peer client) and
// decodes the JSON answer into v. An answer other than 200 is an error,
// but a 503's body is still decoded (/readyz says in it why not ready).
// code is 0 when nothing answered.
func (n *Node) getJSON(ctx context.Context, url string, v any) (code int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.fwd.do(req, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w", url, err)
		}
		return resp.StatusCode, nil
	case http.StatusServiceUnavailable:
		_ = json.Unmarshal(body, v)
	}
	return resp.StatusCode, fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
}

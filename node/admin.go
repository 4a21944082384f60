package node

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/backplane/backplane/fsm"
)

// routes builds the node's HTTP routes.
func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/join", n.requireAdmin(n.handleJoin))
	mux.HandleFunc("POST /admin/remove", n.requireAdmin(n.handleRemove))
	mux.HandleFunc("GET /admin/status", n.requireAdmin(n.handleStatus))
	mux.HandleFunc("POST /admin/snapshot", n.requireAdmin(n.handleSnapshot))
	mux.HandleFunc("GET /admin/backup", n.requireAdmin(n.handleBackup))
	mux.HandleFunc("POST "+applyPath, n.requirePeer(n.handleApply))
	mux.HandleFunc("POST "+announcePath, n.requirePeer(n.handleAnnounce))
	mux.HandleFunc("GET "+progressPath, n.requirePeer(n.handleProgress))
	mux.HandleFunc("POST "+removedPath, n.requirePeer(n.handleRemoved))
	mux.HandleFunc("GET "+levelPath, n.requirePeer(n.handleLevel))
	mux.HandleFunc("GET /healthz", n.handleHealth)
	mux.HandleFunc("GET /readyz", n.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", n.requireAdmin(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", n.requireAdmin(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", n.requireAdmin(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", n.requireAdmin(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", n.requireAdmin(pprof.Trace))
	n.restRoutes(mux)
	n.streams.Register(mux)
	n.hubs.Register(mux)
	n.signalr2Routes(mux)
	n.uiRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errNotFoundf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return withBodyTimeout(azureClientPaths(canonicalHubs(n.gateHubNames(mux))), n.cfg.HTTPBodyTimeout)
}

// memberStatus is one member in /admin/status.
type memberStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Suffrage string `json:"suffrage"`
}

type leaderStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// Status is the body of GET /admin/status.
type Status struct {
	ID           string         `json:"id"`
	State        string         `json:"state"`
	Term         uint64         `json:"term"`
	Leader       leaderStatus   `json:"leader"`
	LastIndex    uint64         `json:"last_index"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	Members      []memberStatus `json:"members"`
	Connections  map[string]int `json:"connections"`
	Messages     fsm.Stats      `json:"messages"`
	HTTPAddr     string         `json:"http_addr"`
	RaftAddr     string         `json:"raft_addr"`
	// ClusterLevel is the cluster's feature level as this node applied it;
	// FeatureLevel the highest this node's version knows (fsm.Level).
	ClusterLevel uint64 `json:"cluster_level"`
	FeatureLevel uint64 `json:"feature_level"`
}

// Status reports the node's view of the cluster.
func (n *Node) Status() (Status, error) {
	rs := n.raft.Status()
	st := Status{
		ID: n.cfg.ID, State: rs.State, Term: rs.Term,
		LastIndex: rs.LastIndex, CommitIndex: rs.CommitIndex, AppliedIndex: rs.AppliedIndex,
		HTTPAddr: n.advertiseHTTP, RaftAddr: n.RaftAddr(),
		Leader:       leaderStatus{ID: rs.LeaderID, RaftAddr: rs.LeaderAddr},
		ClusterLevel: n.fsm.ClusterLevel(), FeatureLevel: fsm.Level,
	}
	members, err := n.raft.Members()
	if err != nil {
		return st, err
	}
	for _, m := range members {
		ms := memberStatus{ID: m.ID, RaftAddr: m.RaftAddr, Suffrage: m.Suffrage}
		if info, ok, err := n.fsm.Node(m.ID); err == nil && ok {
			ms.HTTPAddr = info.HTTPAddr
		}
		if m.ID == rs.LeaderID {
			st.Leader.HTTPAddr = ms.HTTPAddr
		}
		st.Members = append(st.Members, ms)
	}
	if st.Messages, err = n.fsm.Stats(); err != nil {
		return st, err
	}
	st.Connections = n.streams.Counts()
	for k, v := range n.hubs.Counts() {
		st.Connections[k] = v
	}
	if n.signalr2 != nil {
		for k, v := range n.signalr2.Counts() {
			st.Connections[k] = v
		}
	}
	st.Connections["cluster_signalr"] = st.Messages.Connections
	return st, nil
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status()
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (n *Node) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := n.raft.Snapshot(); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshot": "taken", "applied_index": n.fsm.AppliedIndex()})
}

// handleHealth answers 200 while the process serves and Raft runs.
func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	if state := n.raft.Status().State; state == "Shutdown" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "raft is shut down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 when the node is caught up: a member with a
// known leader that has applied what the leader had committed readyLag
// ago (see readiness.go); otherwise 503 with the reason.
func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	rs := n.raft.Status()
	if reason := n.notReadyReason(rs); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason,
			"applied_index": rs.AppliedIndex, "commit_index": rs.CommitIndex})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "leader": rs.LeaderID, "applied_index": rs.AppliedIndex})
}

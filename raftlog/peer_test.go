package raftlog

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/backplane/backplane/peer"
	"github.com/hashicorp/raft"
)

func mustAuth(t *testing.T, id, key string) *peer.Auth {
	t.Helper()
	a, err := peer.New(peer.Config{NodeID: id, ClusterKey: key,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("peer.New: %v", err)
	}
	return a
}

// outsider is a Raft transport of a would-be member on 127.0.0.1:0 over
// stream (from a), closed when the test ends.
func outsider(t *testing.T, a *peer.Auth) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransport(a.RaftStreamLayer(ln, nil), 1, 2*time.Second, nil)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// appendHigherTerm sends r an empty AppendEntries from "intruder" with a
// term above r's, which a member must accept (and step down for).
func appendHigherTerm(tr *raft.NetworkTransport, r *Raft) (*raft.AppendEntriesResponse, error) {
	st := r.Status()
	req := &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(tr.LocalAddr())},
		Term:         st.Term + 10,
		PrevLogEntry: st.LastIndex,
		PrevLogTerm:  st.Term,
	}
	var resp raft.AppendEntriesResponse
	err := tr.AppendEntries(raft.ServerID(r.ID()), raft.ServerAddress(r.LocalAddr()), req, &resp)
	return &resp, err
}

// TestClusterKeyGuardsTheRaftPort: a single node with a cluster key
// refuses AppendEntries from a client with no handshake or a wrong key,
// and keeps its term and leadership; the right key gets through.
func TestClusterKeyGuardsTheRaftPort(t *testing.T) {
	const key = "correct horse battery staple"
	r, err := Open(Config{ID: "a", Dir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true,
		Peer: mustAuth(t, "a", key), FSM: &countFSM{applied: make(chan uint64, 1024)}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Shutdown()
	if host, port, _ := net.SplitHostPort(r.LocalAddr()); host != "127.0.0.1" || port == "0" {
		t.Fatalf("LocalAddr %q, want 127.0.0.1 and the port picked", r.LocalAddr())
	}
	waitLeader(t, r)
	term := r.Status().Term

	plain, err := peer.New(peer.Config{NodeID: "intruder"}) // no authentication: raw Raft bytes
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*peer.Auth{"no handshake": plain, "wrong key": mustAuth(t, "intruder", "wrong horse battery staple")} {
		if resp, err := appendHigherTerm(outsider(t, a), r); err == nil {
			t.Errorf("%s: AppendEntries answered %+v, want a refused connection", name, resp)
		}
		if st := r.Status(); st.Term != term || !r.IsLeader() {
			t.Fatalf("%s: term %d (was %d), state %s: an unauthenticated AppendEntries was accepted", name, st.Term, term, st.State)
		}
	}

	// The control: the same request with the key is heard (the node takes
	// the higher term), so the refusals above are the key's doing.
	resp, err := appendHigherTerm(outsider(t, mustAuth(t, "b", key)), r)
	if err != nil {
		t.Fatalf("AppendEntries with the right key: %v", err)
	}
	if resp.Term <= term {
		t.Fatalf("with the right key the node answered term %d, want above %d", resp.Term, term)
	}
}

// TestAdvertiseAddrWithPeer: LocalAddr is the advertised address when one
// is set, with or without member authentication.
func TestAdvertiseAddrWithPeer(t *testing.T) {
	for name, a := range map[string]*peer.Auth{"plain": nil, "cluster key": mustAuth(t, "a", "correct horse battery staple")} {
		r, err := Open(Config{ID: "a", Dir: t.TempDir(), BindAddr: "127.0.0.1:0", AdvertiseAddr: "127.0.0.1:7999",
			Peer: a, FSM: &countFSM{applied: make(chan uint64, 1)}})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		if got := r.LocalAddr(); got != "127.0.0.1:7999" {
			t.Errorf("%s: LocalAddr %q, want the advertised 127.0.0.1:7999", name, got)
		}
		_ = r.Shutdown()
	}
}

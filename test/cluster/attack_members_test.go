package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testpki"
	"github.com/backplane/backplane/peer"
)

// Members prove who they are: a three-node cluster with mutual TLS (member
// certificates made by the test) joins, fails over and lets a reader
// resume on another node; a SignalR WebSocket that reaches a node other
// than its holder is relayed over mutual TLS.
func TestMutualTLSClusterJoinsFailsOverAndResumes(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{PeerTLS: true})
	leader := waitMembers(t, 30*time.Second, nodes...)
	followers := without(nodes, leader)
	// Writes through a follower are forwarded to the leader over mutual TLS.
	var last uint64
	for i := range 10 {
		last = mustPublishTo(t, followers[0], "/api/v1/hubs/chat", messageBody("before", i), "")
	}
	seen, err := readAllWait(t, followers[1], last)
	if err != nil {
		t.Fatal(err)
	}
	checkDense(t, "reader before the failover", seen, 1)

	// A SignalR client negotiates with one node and opens its WebSocket on
	// another: the socket is tunnelled to the holder over mutual TLS.
	ws := signalRWebSocket(t, followers[0], followers[1], "chat")
	idx := mustPublishTo(t, followers[1], "/api/v1/hubs/chat", messageBody("toSocket", "hello"), "")
	if got := readInvocationTarget(t, ws); got != "toSocket" {
		t.Fatalf("relayed WebSocket: got an invocation of %q, want toSocket (index %d)", got, idx)
	}
	last = idx

	kill9(t, leader)
	newLeader := waitLeaderAmong(t, 30*time.Second, "the survivors to elect a new leader over mutual TLS", followers)
	var other *node
	for _, n := range followers {
		if n != newLeader {
			other = n
		}
	}
	for i := range 10 {
		last = mustPublishTo(t, other, "/api/v1/hubs/chat", messageBody("after", i), "")
	}
	// The reader resumes on the other survivor from the last index it saw
	// and gets exactly what it missed.
	resumed, err := readAllWait(t, other, last)
	if err != nil {
		t.Fatal(err)
	}
	checkDense(t, "reader after the failover", resumed, 1)
	if len(resumed) != int(last) {
		t.Fatalf("after the failover: %d messages, want %d", len(resumed), last)
	}
	restart(t, leader)
	waitFor(t, 30*time.Second, "the restarted member to catch up over mutual TLS", func() (bool, string) {
		st, err := status(leader)
		if err != nil {
			return false, err.Error()
		}
		return st.Messages.LastMessage == last, fmt.Sprintf("last message %d, want %d", st.Messages.LastMessage, last)
	})
}

// With mutual TLS, a host without a member certificate is refused on the
// Raft port and on the node-to-node endpoints, and the admin token alone
// opens neither.
func TestOutsiderIsRefusedWithPeerTLS(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", PeerTLS: true, AdminToken: "admin-secret-token"})
	// Settled: the leader raises the cluster's feature level by a commit
	// shortly after it is elected, which must not be counted as the
	// outsider's doing.
	waitMembers(t, 15*time.Second, n)
	before := mustStatus(t, n)

	strangerCA, err := testpki.NewCA("stranger CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stranger, err := strangerCA.WriteCert(dir, "stranger")
	if err != nil {
		t.Fatal(err)
	}
	strangerCAFile := filepath.Join(dir, "stranger-ca.pem")
	if err := strangerCA.WriteCA(strangerCAFile); err != nil {
		t.Fatal(err)
	}
	// Raft: a TLS client with another CA's certificate, and plain TCP.
	strangerAuth, err := peer.New(peer.Config{NodeID: "evil", CertFile: stranger.Cert, KeyFile: stranger.Key, CAFile: strangerCAFile})
	if err != nil {
		t.Fatal(err)
	}
	checkRaftRefuses(t, n, before, "stranger certificate", raftClient(t, strangerAuth))
	checkRaftRefuses(t, n, before, "plain TCP", raftClient(t, nil))

	// Node-to-node HTTP: no certificate, the admin token alone, another
	// CA's certificate (with and without the peer server name).
	poison := []byte{1, 1, 0x7f}
	for _, h := range []http.Header{{}, {"Authorization": {"Bearer admin-secret-token"}}} {
		res, err := do(http.MethodPost, n.baseURL()+"/internal/v1/apply", poison, h)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusForbidden {
			t.Fatalf("node-to-node apply with %v and no member certificate: got %s, want 403", h, res)
		}
	}
	pair, err := tls.LoadX509KeyPair(stranger.Cert, stranger.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, serverName := range []string{"", peer.ServerName} {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{pair}, ServerName: serverName, InsecureSkipVerify: true, //nolint:gosec // the attacker does not care who answers
		}}}
		resp, err := client.Post(n.baseURL()+"/internal/v1/apply", "application/vnd.backplane.commands", bytes.NewReader(poison))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("node-to-node apply with a stranger's certificate (server name %q): got %d %s, want refused", serverName, resp.StatusCode, body)
			}
		}
	}
	after := mustStatus(t, n)
	if after.Term != before.Term || after.AppliedIndex != before.AppliedIndex || after.State != "Leader" {
		t.Fatalf("after the outsider: term %d→%d, applied %d→%d, state %s: an outsider changed the node", before.Term, after.Term, before.AppliedIndex, after.AppliedIndex, after.State)
	}
	mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("still", "working"), "")
}

// With a cluster key, members join without an admin token; a host that
// does not know the key is refused on the Raft port (with no handshake or
// a wrong key) and on the node-to-node endpoints (unsigned, signed with a
// wrong key, or with the admin token alone); a correctly signed request
// is served, and the cluster fails over.
func TestOutsiderIsRefusedWithClusterKey(t *testing.T) {
	const key = "test-cluster-key-0123456789abcdef"
	nodes := startCluster(t, 3, nodeOptions{ClusterKey: key, AdminToken: "admin-secret-token"})
	leader := waitMembers(t, 30*time.Second, nodes...)
	before := mustStatus(t, leader)

	wrong, err := peer.New(peer.Config{NodeID: "evil", ClusterKey: "not-the-cluster-key-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	checkRaftRefuses(t, leader, before, "wrong cluster key", raftClient(t, wrong))
	checkRaftRefuses(t, leader, before, "plain TCP", raftClient(t, nil))

	batch := fsm.EncodeBatch([]fsm.Command{fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "forged", Arguments: []byte(`["by an outsider"]`)})})
	send := func(auth *peer.Auth, h http.Header) int {
		req, err := http.NewRequest(http.MethodPost, leader.baseURL()+"/internal/v1/apply", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h.Clone()
		req.Header.Set("Content-Type", "application/vnd.backplane.commands")
		var resp *http.Response
		if auth != nil {
			resp, err = auth.Do(req, batch)
		} else {
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(batch)), int64(len(batch))
			resp, err = httpClient.Do(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, got := range map[string]int{
		"unsigned":                      send(nil, http.Header{}),
		"the admin token alone":         send(nil, http.Header{"Authorization": {"Bearer admin-secret-token"}}),
		"signed with a wrong key":       send(wrong, http.Header{}),
		"wrong key and the admin token": send(wrong, http.Header{"Authorization": {"Bearer admin-secret-token"}}),
	} {
		if got != http.StatusForbidden {
			t.Fatalf("node-to-node apply %s: status %d, want 403", name, got)
		}
	}
	if st := mustStatus(t, leader); st.Messages.LastMessage != before.Messages.LastMessage || st.Term != before.Term {
		t.Fatalf("after the outsider: last message %d→%d, term %d→%d", before.Messages.LastMessage, st.Messages.LastMessage, before.Term, st.Term)
	}
	member, err := peer.New(peer.Config{NodeID: "tester", ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if got := send(member, http.Header{}); got != http.StatusOK {
		t.Fatalf("node-to-node apply signed with the cluster key: status %d, want 200", got)
	}

	kill9(t, leader)
	survivors := without(nodes, leader)
	waitFor(t, 30*time.Second, "a publish through a survivor after the failover", func() (bool, string) {
		res, err := publish(survivors[0], "chat", messageBody("after", "failover"), "")
		if err != nil {
			return false, err.Error()
		}
		return res.Index > 0, fmt.Sprintf("%+v", res)
	})
}

// checkRaftRefuses sends n an AppendEntries with a higher term and a
// forged publish through tr: it must fail and change nothing.
func checkRaftRefuses(t *testing.T, n *node, before nodeStatus, name string, tr *raft.NetworkTransport) {
	t.Helper()
	entry := fsm.EncodeEntry(time.Now().UnixNano(), []fsm.Command{fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "forged", Arguments: []byte("[]")})})
	req := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(tr.LocalAddr())},
		Term:              before.Term + 100,
		PrevLogEntry:      before.LastIndex,
		PrevLogTerm:       before.Term,
		Entries:           []*raft.Log{{Index: before.LastIndex + 1, Term: before.Term + 100, Type: raft.LogCommand, Data: entry}},
		LeaderCommitIndex: before.LastIndex + 1,
	}
	var resp raft.AppendEntriesResponse
	if err := tr.AppendEntries(raft.ServerID(n.id), raft.ServerAddress(n.raftAddr), req, &resp); err == nil {
		t.Fatalf("Raft AppendEntries from an outsider (%s): answered %+v, want the connection refused", name, resp)
	}
	st := mustStatus(t, n)
	if st.Term != before.Term || st.Messages.LastMessage != before.Messages.LastMessage {
		t.Fatalf("after Raft traffic from an outsider (%s): term %d→%d, last message %d→%d", name, before.Term, st.Term, before.Messages.LastMessage, st.Messages.LastMessage)
	}
}

// raftClient is an outsider's Raft transport on loopback: through auth's
// stream layer, or plain TCP when auth is nil.
func raftClient(t *testing.T, auth *peer.Auth) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var layer raft.StreamLayer = plainLayer{ln}
	if auth != nil {
		layer = auth.RaftStreamLayer(ln, nil)
	}
	tr := raft.NewNetworkTransport(layer, 1, 3*time.Second, io.Discard)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

type plainLayer struct{ net.Listener }

func (l plainLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// readAllWait reads n's hub "chat" from the start until it has last.
func readAllWait(t *testing.T, n *node, last uint64) ([]streamMessage, error) {
	t.Helper()
	var msgs []streamMessage
	var err error
	waitFor(t, 15*time.Second, fmt.Sprintf("%s to serve every message up to %d", n.id, last), func() (bool, string) {
		msgs, err = readAll(n, "chat", 0)
		if err != nil {
			return false, err.Error()
		}
		return len(msgs) > 0 && msgs[len(msgs)-1].Index == last, fmt.Sprintf("%d messages", len(msgs))
	})
	return msgs, err
}

// signalRWebSocket negotiates a SignalR connection on holder and opens its
// WebSocket on via, with the JSON protocol; the handshake is done.
func signalRWebSocket(t *testing.T, holder, via *node, hub string) *websocket.Conn {
	t.Helper()
	_, connToken := negotiateSignalR(t, holder, hub, nil, "a connection")
	scheme := "ws"
	if via.opts.PeerTLS {
		scheme = "wss"
	}
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: &tls.Config{RootCAs: clusterCA.Pool(), MinVersion: tls.VersionTLS12}}
	return signalRHandshake(t, d, scheme+"://"+via.httpAddr+"/hubs/"+hub+"?id="+connToken, "a WebSocket through "+via.id+" to "+holder.id)
}

// readInvocationTarget reads records until an invocation and returns its
// target (pings are skipped).
func readInvocationTarget(t *testing.T, conn *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read the relayed WebSocket: %v", err)
		}
		for _, rec := range strings.Split(strings.TrimSuffix(string(data), "\x1e"), "\x1e") {
			var m struct {
				Type   int    `json:"type"`
				Target string `json:"target"`
			}
			if err := json.Unmarshal([]byte(rec), &m); err == nil && m.Type == 1 {
				return m.Target
			}
		}
	}
	return ""
}

// Package node is one Backplane server: it wires the replicated state
// machine (fsm), the Raft member (raftlog), member authentication and the
// peer client (peer) and the client endpoints (transport/stream,
// transport/signalr) behind one HTTP listener, with the admin endpoints,
// the server REST API, client tokens, and the write path: the proposer
// that batches commands and the forwarding of a follower's batches to the
// leader. It is the only package that both encodes log commands and
// serves HTTP; the state machine's rules live in fsm, the wire protocols
// in transport.
package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/peer"
	"github.com/backplane/backplane/raftlog"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
	"github.com/backplane/backplane/transport/signalr"
	"github.com/backplane/backplane/transport/signalr2"
	"github.com/backplane/backplane/transport/stream"
)

// AddressesFile is written into the data directory once the node listens:
// {"id", "http_addr", "raft_addr"} with the bound addresses, so tools and
// tests that start nodes on port 0 learn where they are.
const AddressesFile = "addresses.json"

// Node is a running Backplane server.
type Node struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm.FSM
	raft     *raftlog.Raft
	proposer *proposer
	fwd      *forwarder
	metrics  *metrics
	delays   *delayMetrics
	streams  *stream.Server
	hubs     *signalr.Server
	// signalr2 is the SignalR 2 endpoint (nil until the routes are made).
	signalr2 *signalr2.Server
	// clientKeys verifies client connection tokens.
	clientKeys *clientKeys
	// peers authenticates members to each other and is the one client
	// for node-to-node HTTP.
	peers *peer.Auth
	// ready samples the leader's commit index for readiness.
	ready readiness

	httpLn        net.Listener
	server        *http.Server
	advertiseHTTP string

	baseCtx    context.Context
	cancelBase context.CancelCauseFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// New validates cfg, opens the store and the Raft member, and binds the
// HTTP listener. Run serves.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "node", "id", cfg.ID)}
	n.baseCtx, n.cancelBase = context.WithCancelCause(context.Background())
	defer func() {
		if err != nil {
			n.closeParts()
		}
	}()
	n.clientKeys, err = loadClientKeys(cfg.AccessKey, cfg.JWTPublicKeyFile, cfg.JWKSFile)
	if err != nil {
		return nil, err
	}
	n.peers, err = peer.New(peer.Config{
		NodeID: cfg.ID, CertFile: cfg.PeerTLSCert, KeyFile: cfg.PeerTLSKey, CAFile: cfg.PeerTLSCA,
		ClusterKey: cfg.ClusterKey, ClientCertFile: cfg.TLSCert, ClientKeyFile: cfg.TLSKey,
		Logger: cfg.Logger.With("component", "peer"),
	})
	if err != nil {
		return nil, err
	}
	n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on -http %s: %w", cfg.HTTPAddr, err)
	}
	if tc := n.peers.HTTPTLSConfig(); tc != nil {
		n.httpLn = tls.NewListener(n.httpLn, tc)
	}
	n.advertiseHTTP = cfg.AdvertiseHTTP
	if n.advertiseHTTP == "" {
		n.advertiseHTTP = n.httpLn.Addr().String()
	}
	n.delays = newDelayMetrics()
	n.fsm, err = fsm.New(fsm.Config{
		Dir:       filepath.Join(cfg.DataDir, "state"),
		Retention: cfg.Retention,
		// Not configurable per node: it decides at apply time whether a
		// publish gets a new index, so every replica must use the same.
		IdempotencyWindow: fsm.DefaultIdempotencyWindow,
		Logger:            cfg.Logger.With("component", "fsm"),
		ObserveApply:      func(d time.Duration) { n.delays.apply.Observe(d.Seconds()) },
	})
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	if cfg.RestoreFrom != "" {
		if err := n.seedFromBackup(); err != nil {
			return nil, err
		}
	}
	n.raft, err = raftlog.Open(raftlog.Config{
		ID:                cfg.ID,
		Dir:               filepath.Join(cfg.DataDir, "raft"),
		BindAddr:          cfg.RaftAddr,
		AdvertiseAddr:     cfg.AdvertiseRaft,
		Bootstrap:         len(cfg.Join) == 0,
		FSM:               n.fsm,
		Logger:            cfg.Logger.With("component", "raft"),
		Timing:            cfg.RaftTiming,
		SnapshotThreshold: cfg.SnapshotThreshold,
		SnapshotInterval:  cfg.SnapshotInterval,
		TrailingLogs:      cfg.TrailingLogs,
		NoSync:            cfg.UnsafeNoFsync,
		Peer:              n.peers,
	})
	if err != nil {
		return nil, err
	}
	n.metrics = newMetrics(n)
	n.fwd = newForwarder(n.peers, cfg.AdminToken)
	n.proposer = newProposer(n.raft, n.fwd, n.leaderURL, cfg.WriteTimeout, n.log, n.metrics)
	n.streams = stream.NewServer(n.fsm, stream.Options{
		Logger:         cfg.Logger.With("component", "stream"),
		Authorize:      n.authorizeClient,
		RelayPolicy:    cfg.RelayPolicy,
		AllowedOrigins: cfg.AllowedOrigins,
		ConnLimit:      access.NewConnLimit(cfg.MaxConnectionsPerAddress),
		NotReady:       n.notReady,
		Context:        n.baseCtx, // draining ends the streams, with their cursor
	})
	n.hubs = n.newHubServer()
	n.server = &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: cfg.HTTPHeaderTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return n.baseCtx },
		ConnContext:       netconn.Context,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	if err := n.writeAddresses(); err != nil {
		return nil, err
	}
	if cfg.AdminToken == "" && !isLoopbackListen(cfg.HTTPAddr) {
		n.log.Warn("HTTP listens beyond loopback without -admin-token: admin endpoints and node-to-node calls accept only loopback clients, so nodes on other machines cannot join or forward writes; set -admin-token on every node")
	}
	if cfg.AccessKey == "" && !isLoopbackListen(cfg.HTTPAddr) {
		n.log.Warn("HTTP listens beyond loopback without -access-key: anyone who can reach it may publish and connect")
	}
	return n, nil
}

// HTTPAddr is the address the node advertises for HTTP.
func (n *Node) HTTPAddr() string { return n.advertiseHTTP }

// RaftAddr is the address the node advertises for Raft.
func (n *Node) RaftAddr() string { return n.raft.LocalAddr() }

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

func (n *Node) writeAddresses() error {
	b, err := json.Marshal(fsm.NodeInfo{ID: n.cfg.ID, HTTPAddr: n.advertiseHTTP, RaftAddr: n.raft.LocalAddr()})
	if err != nil {
		return err
	}
	path := filepath.Join(n.cfg.DataDir, AddressesFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Run serves until ctx ends, then shuts the node down. With -join it first
// joins the cluster, and fails if that does not succeed in time.
func (n *Node) Run(ctx context.Context) error {
	serveErr := make(chan error, 1)
	n.wg.Add(6)
	go func() {
		defer n.wg.Done()
		if err := n.server.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("http server: %w", err)
		}
	}()
	go func() { defer n.wg.Done(); n.proposer.run() }()
	go func() { defer n.wg.Done(); n.announceLoop() }()
	go func() { defer n.wg.Done(); n.janitorLoop() }()
	go func() { defer n.wg.Done(); n.readinessLoop() }()
	go func() { defer n.wg.Done(); n.levelLoop() }()
	n.hubs.Start()
	n.log.Info("node started", "http", n.advertiseHTTP, "raft", n.RaftAddr(), "data", n.cfg.DataDir,
		"restarted", n.raft.Restarted())

	if len(n.cfg.Join) > 0 && !n.raft.Restarted() {
		if err := n.joinCluster(ctx); err != nil {
			n.Close()
			return err
		}
	} else if len(n.cfg.Join) > 0 {
		n.log.Info("existing Raft state found: ignoring -join")
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	n.Close()
	return err
}

// Close stops serving and shuts down Raft and the store. Safe to call more
// than once.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		n.log.Info("node stopping")
		n.drain()
		if n.hubs != nil {
			n.hubs.Stop()
		}
		n.cancelBase(stream.ErrDraining) // ends streams (with their cursor) and long polls
		if n.signalr2 != nil {
			n.signalr2.Stop() // its WebSockets outlive their requests: tells them to reconnect
		}
		if n.server != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.server.Shutdown(ctx); err != nil {
				_ = n.server.Close()
			}
			cancel()
		}
		if n.proposer != nil {
			n.proposer.close()
		}
		n.wg.Wait()
		n.closeParts()
		n.log.Info("node stopped")
	})
}

func (n *Node) closeParts() {
	if n.cancelBase != nil {
		n.cancelBase(errors.New("node closed"))
	}
	if n.raft != nil {
		if err := n.raft.Shutdown(); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
	}
	if n.fsm != nil {
		if err := n.fsm.Close(); err != nil {
			n.log.Warn("close store", "err", err)
		}
	}
	if n.httpLn != nil {
		_ = n.httpLn.Close()
	}
}

// leaderURL is the base URL of the leader's HTTP endpoint.
func (n *Node) leaderURL() (string, error) {
	id, _ := n.raft.Leader()
	if id == "" {
		return "", ErrNoLeader
	}
	info, ok, err := n.fsm.Node(id)
	if err != nil {
		return "", err
	}
	if !ok || info.HTTPAddr == "" {
		return "", fmt.Errorf("%w: the leader's HTTP address is not known yet", ErrNoLeader)
	}
	return n.fwd.url(info.HTTPAddr), nil
}

// self is this node's advertised addresses.
func (n *Node) self() fsm.NodeInfo {
	return fsm.NodeInfo{ID: n.cfg.ID, RaftAddr: n.raft.LocalAddr(), HTTPAddr: n.advertiseHTTP}
}

func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Package raftlog sets up hashicorp/raft for Backplane: a raft-boltdb log
// and stable store behind a log cache, a file snapshot store and the TCP
// transport (members authenticated by package peer when configured), all
// under one directory; bootstrap, restart, join, remove and leadership
// observation. Every non-default setting is explained in
// docs/operations.md and docs/performance.md.
package raftlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/backplane/backplane/peer"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotLeader: this node is not the leader; forward to the leader.
	// Nothing was appended, so the write may be retried elsewhere.
	ErrNotLeader = errors.New("not the leader")
	// ErrLeadershipLost: leadership was lost while the entry was in flight.
	// It may or may not be committed by the next leader: only a retry with
	// an idempotency key is safe.
	ErrLeadershipLost = errors.New("leadership lost before commit was known")
	// ErrNoLeader: no leader is known (an election is under way).
	ErrNoLeader = errors.New("no leader")
	// ErrConflict: a join names an id or address that another member holds.
	ErrConflict = errors.New("conflicting member")
	// ErrUnknownMember: a remove names an id that is not a member.
	ErrUnknownMember = errors.New("unknown member")
	// ErrTimeout: the operation did not finish in time.
	ErrTimeout = errors.New("raft operation timed out")
)

// Timing is the Raft clock. The defaults suit a LAN: a failed leader is
// replaced in about 1–2 s.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// DefaultTiming keeps hashicorp/raft's failure detection (a dead leader is
// replaced in about 1–2 s) and shortens CommitTimeout so idle followers
// learn commits within ~5 ms. Halving the timeouts made a loaded two-core
// machine lose leadership spuriously (the lease check steps a leader down
// when it misses its followers for 250 ms), so shorter values are an
// operator's choice (-raft-heartbeat-timeout and friends), not a default.
var DefaultTiming = Timing{
	HeartbeatTimeout:   time.Second,
	ElectionTimeout:    time.Second,
	LeaderLeaseTimeout: 500 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

// Config configures a Raft member. Nothing is changed after Open.
type Config struct {
	ID            string // node id, unique in the cluster
	Dir           string // directory for raft.db and snapshots/
	BindAddr      string // TCP listen address; port 0 picks a free port
	AdvertiseAddr string // address other members dial; default: the bound address
	// Peer authenticates the other members on the Raft port (mutual TLS
	// or the cluster key). Nil means plain TCP.
	Peer *peer.Auth
	// Bootstrap makes a node with no Raft state start a one-member cluster.
	// A node with existing state ignores it.
	Bootstrap bool
	FSM       raft.FSM
	Logger    *slog.Logger
	Timing    Timing
	// SnapshotThreshold is how many new entries trigger a snapshot (checked
	// every SnapshotInterval); TrailingLogs is how many entries are kept
	// after one, so slightly lagging followers catch up without a snapshot.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// NoSync turns off fsync of the Raft log. Only for benchmarks: an
	// acknowledged message could then be lost on a power failure.
	NoSync bool

	// wrapLogs, set only by tests, wraps the log store (to make it fail).
	wrapLogs func(raft.LogStore) raft.LogStore
}

// Raft is a running Raft member.
type Raft struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	streams   *trackedStream // the transport's connections, ended by Shutdown
	snaps     *raft.FileSnapshotStore
	// Restarted is true when the node found Raft state on disk.
	restarted bool

	mu        sync.Mutex
	observers []observerChan // closed on Shutdown, ending their goroutines
}

type observerChan struct {
	o  *raft.Observer
	ch chan raft.Observation
}

// Open starts a Raft member. A node with existing state restarts from it;
// otherwise it bootstraps a new cluster if cfg.Bootstrap, or waits to be
// added by a leader.
func Open(cfg Config) (*Raft, error) {
	if cfg.ID == "" {
		return nil, errors.New("raftlog: node id is required")
	}
	if cfg.FSM == nil {
		return nil, errors.New("raftlog: FSM is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftlog: create dir: %w", err)
	}
	if err := checkFiles(cfg.Dir, cfg.ID); err != nil {
		return nil, err
	}
	r := &Raft{cfg: cfg, log: cfg.Logger}
	if err := r.start(cfg); err != nil {
		r.closeParts()
		return nil, err
	}
	if err := writeMember(cfg.Dir, cfg.ID); err != nil {
		_ = r.Shutdown()
		return nil, err
	}
	return r, nil
}

// start opens the stores and the transport and starts Raft; on error the
// caller closes what was opened.
func (r *Raft) start(cfg Config) (err error) {
	hlog := newHCLog(cfg.Logger)
	r.store, err = openLogStore(filepath.Join(cfg.Dir, "raft.db"), cfg.NoSync)
	if err != nil {
		return err
	}
	// Without the cache the leader re-reads each entry from bbolt for every
	// follower; with it, replication is served from memory.
	var base raft.LogStore = r.store
	if cfg.wrapLogs != nil {
		base = cfg.wrapLogs(base)
	}
	logs, err := raft.NewLogCache(1024, base)
	if err != nil {
		return fmt.Errorf("raftlog: log cache: %w", err)
	}
	r.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("raftlog: snapshot store: %w", err)
	}
	var advertise net.Addr
	if cfg.AdvertiseAddr != "" {
		advertise, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("raftlog: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
	}
	r.transport, r.streams, err = newTransport(cfg, advertise, hlog.Named("transport"))
	if err != nil {
		return err
	}

	rc := raftConfig(cfg)
	trans := noPipeline{r.transport}
	if err := checkState(cfg.Dir, r.store, logs); err != nil {
		return err
	}
	r.restarted, err = raft.HasExistingState(logs, r.store, r.snaps)
	if err != nil {
		return fmt.Errorf("raftlog: check existing state: %w", err)
	}
	if !r.restarted && cfg.Bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: r.transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, logs, r.store, r.snaps, trans, conf); err != nil {
			return fmt.Errorf("raftlog: bootstrap: %w", err)
		}
		r.log.Info("bootstrapped a new cluster", "id", cfg.ID, "raft_addr", r.transport.LocalAddr())
	}
	r.raft, err = newRaft(cfg.Dir, rc, cfg.FSM, logs, r.store, r.snaps, trans)
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			return err
		}
		if strings.Contains(err.Error(), "snapshot") {
			return damaged("restore from the snapshots in %s: %v", filepath.Join(cfg.Dir, "snapshots"), err)
		}
		return fmt.Errorf("raftlog: start raft: %w", err)
	}
	return nil
}

// newRaft is raft.NewRaft with its panic turned into ErrDamaged: it reads
// every entry after the restored snapshot for configuration changes, and
// panics on one that is missing. That happens before it starts any
// goroutine, so nothing is left running.
func newRaft(dir string, rc *raft.Config, fsm raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (rf *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			rf, err = nil, damaged("raft cannot start from the log and snapshots in %s: %v", dir, p)
		}
	}()
	return raft.NewRaft(rc, fsm, logs, stable, snaps, trans)
}

// openLogStore opens raft.db. A damaged file that gets past checkFiles and
// still makes bbolt panic is an error too.
func openLogStore(path string, noSync bool) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, damaged("the log store %s is damaged: bbolt: %v", path, r)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path:        path,
		NoSync:      noSync,
		BoltOptions: &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("raftlog: open log store %s: %w", path, err)
	}
	return store, nil
}

// newTransport listens on cfg.BindAddr and builds the Raft transport over
// cfg.Peer's stream layer (plain TCP when nil): up to 3 pooled connections
// per member and a 10 s I/O timeout, its connections on record so Shutdown
// can end them (conns.go). Its LocalAddr is advertise when set,
// else the bound address (so port 0 reports the port picked), and, as in
// raft's own TCP transport, it must be a concrete IP.
func newTransport(cfg Config, advertise net.Addr, logger hclog.Logger) (*raft.NetworkTransport, *trackedStream, error) {
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("raftlog: listen on %s: %w", cfg.BindAddr, err)
	}
	local := advertise
	if local == nil {
		local = ln.Addr()
	}
	if tcp, ok := local.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, nil, fmt.Errorf("raftlog: raft address %s cannot be dialled by other members: set an advertise address", local)
	}
	var inner raft.StreamLayer
	if cfg.Peer != nil {
		inner = cfg.Peer.RaftStreamLayer(ln, advertise)
	} else {
		inner = plainStream{Listener: ln, advertise: advertise}
	}
	stream := newTrackedStream(inner)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), stream, nil
}

// plainStream is the Raft stream layer without member authentication:
// plain TCP, as raft.TCPStreamLayer.
type plainStream struct {
	net.Listener
	advertise net.Addr
}

// Dial connects to another member.
func (s plainStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// Addr is the advertised address if any, else the bound one.
func (s plainStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

func raftConfig(cfg Config) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.Timing.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Timing.CommitTimeout
	// Up to 1,024 entries per AppendEntries and a batched apply channel:
	// many applies in flight share one disk write (group commit).
	rc.MaxAppendEntries = 1024
	rc.BatchApplyCh = true
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.Logger = newHCLog(cfg.Logger)
	return rc
}

// Restarted reports whether the node found existing Raft state at start.
func (r *Raft) Restarted() bool { return r.restarted }

// LocalAddr is the Raft address other members dial.
func (r *Raft) LocalAddr() string { return string(r.transport.LocalAddr()) }

// ID is this node's id.
func (r *Raft) ID() string { return r.cfg.ID }

// Apply proposes data as one log entry and waits until it is applied on
// this (leader) node, or ctx ends. It returns the entry's Raft index and
// the FSM's response.
func (r *Raft) Apply(ctx context.Context, data []byte) (uint64, interface{}, error) {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return 0, nil, ErrTimeout
		}
	}
	f := r.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return 0, nil, mapError(err)
	}
	return f.Index(), f.Response(), nil
}

// mapError turns hashicorp/raft's errors into this package's sentinels,
// keeping the original in the chain.
func mapError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("raft is shut down: %w", err)
	}
	return err
}

// Shutdown stops Raft and closes its stores and transport.
func (r *Raft) Shutdown() error {
	var err error
	if r.raft != nil {
		f := r.raft.Shutdown()
		// Raft is told to stop; RPCs still waiting on a member that does
		// not answer would hold it up to the I/O timeout (conns.go).
		r.streams.stop()
		err = f.Error()
		r.mu.Lock()
		for _, oc := range r.observers {
			r.raft.DeregisterObserver(oc.o)
			close(oc.ch)
		}
		r.observers = nil
		r.mu.Unlock()
	}
	r.closeParts()
	if err != nil {
		return fmt.Errorf("raftlog: shutdown: %w", err)
	}
	return nil
}

func (r *Raft) closeParts() {
	if r.transport != nil {
		_ = r.transport.Close()
	}
	if r.store != nil {
		_ = r.store.Close()
	}
}

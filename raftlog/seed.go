package raftlog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// SeedConfig describes a new one-member cluster started from a backup.
type SeedConfig struct {
	// Dir is the Raft directory (as Config.Dir); it must hold no Raft state.
	Dir string
	// ID and RaftAddr are the seeding member's id and the Raft address the
	// other members will dial (a concrete host and port).
	ID       string
	RaftAddr string
	// Index is the Raft index the backup's state was taken at.
	Index uint64
	// State is the backup: a state-machine snapshot as the FSM persists it.
	State io.Reader
}

// HasState reports whether dir already holds Raft state (a log, a term or
// a snapshot, or the record that a member ran there). It reads raft.db only
// after the checks Open makes (damage.go), and refuses an empty or damaged
// one with ErrDamaged: seeding over a member that lost its log would start
// a second cluster.
func HasState(dir string) (bool, error) {
	dbPath := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(filepath.Join(dir, memberFile)); err == nil {
		return true, nil
	}
	st, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(filepath.Join(dir, "snapshots")); errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
	case err != nil:
		return false, fmt.Errorf("raftlog: log store: %w", err)
	case st.Size() == 0:
		return false, damaged("the log store %s is empty (0 bytes): it was truncated or lost", dbPath)
	default:
		if err := checkBolt(dbPath); err != nil {
			return false, damaged("the log store %s is damaged: %v", dbPath, err)
		}
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath})
	if err != nil {
		return false, fmt.Errorf("raftlog: open log store: %w", err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return false, fmt.Errorf("raftlog: snapshot store: %w", err)
	}
	return raft.HasExistingState(store, store, snaps)
}

// ErrExistingState: the directory already holds Raft state, so there is
// nothing to seed.
var ErrExistingState = errors.New("the directory already holds Raft state")

// seedTerm is the term of a seeded snapshot and of the seeding member's
// stable store: the new cluster's history starts there.
const seedTerm = 1

// Seed writes a Raft snapshot of the backup at Index whose configuration
// is the seeding member alone, and the matching current term. Open then
// starts from it like a member that had taken that snapshot: it restores
// the state machine from it, elects itself and serves; other members join
// as usual and receive the snapshot.
func Seed(cfg SeedConfig) error {
	if cfg.ID == "" || cfg.Index == 0 || cfg.State == nil {
		return errors.New("raftlog: seed: id, index and state are required")
	}
	host, port, err := net.SplitHostPort(cfg.RaftAddr)
	if err != nil || host == "" || port == "0" || net.ParseIP(host) == nil {
		return fmt.Errorf("raftlog: seed: the Raft address %q must be a concrete IP and port (the other members dial it; use -advertise-raft)", cfg.RaftAddr)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("raftlog: seed: create dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("raftlog: seed: open log store: %w", err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hclog.NewNullLogger())
	if err != nil {
		return fmt.Errorf("raftlog: seed: snapshot store: %w", err)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("raftlog: seed: check existing state: %w", err)
	}
	if existing {
		return fmt.Errorf("raftlog: seed: %s: %w", cfg.Dir, ErrExistingState)
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr),
	}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, cfg.Index, seedTerm, conf, cfg.Index, trans)
	if err != nil {
		return fmt.Errorf("raftlog: seed: create snapshot: %w", err)
	}
	if _, err := io.Copy(sink, cfg.State); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftlog: seed: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftlog: seed: close snapshot: %w", err)
	}
	// Raft keeps its current term under this key; a member never starts
	// below the term of the snapshot it holds.
	if err := store.SetUint64([]byte("CurrentTerm"), seedTerm); err != nil {
		return fmt.Errorf("raftlog: seed: write term: %w", err)
	}
	return nil
}

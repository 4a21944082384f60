// Package fsm is Backplane's replicated state machine: it applies committed
// Raft entries, in log order, to a bbolt store that is both the message log
// (the durable replay cache) and the replicated hub state (groups,
// connections, cluster members).
//
// Every published message gets the next message index, numbered densely in
// Raft order. That index is the message's cursor on every node.
//
// The store is a cache of the Raft log: it is opened without fsync and
// rebuilt at every start from the latest Raft snapshot plus the log after
// it, so a message is made durable once, by the Raft log.
//
// fsm owns the command encoding, apply, retention, snapshots and cursor
// reads. It must not know HTTP, Raft's transport or any client protocol;
// what stateful reconnect needs (a connection's stream of messages and
// completions, checkpoints, takeover) is kept in stateful.go and
// connread.go, in the log's terms (positions, sequence numbers), so it is
// one clearly bounded part.
package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Errors returned in a Result for commands the state machine rejects. They
// change nothing.
var (
	ErrInvalidCommand = errors.New("fsm: invalid command")
	ErrUnknownCommand = errors.New("fsm: unknown optional command")
)

// storeFile is the name of the bbolt store inside Config.Dir.
const storeFile = "state.db"

// Retention bounds the retained messages. Zero means unbounded for that
// dimension. Whatever bound is hit first trims the oldest messages.
type Retention struct {
	MaxMessages uint64
	MaxBytes    uint64
	MaxAge      time.Duration
}

// DefaultRetention keeps a day of history, at most a million messages and
// 1 GiB of message records.
var DefaultRetention = Retention{MaxMessages: 1_000_000, MaxBytes: 1 << 30, MaxAge: 24 * time.Hour}

// DefaultIdempotencyWindow is how long a publish's idempotency key is
// remembered.
const DefaultIdempotencyWindow = 10 * time.Minute

// Config configures an FSM. Nothing is changed after New.
type Config struct {
	// Dir holds the store file. It is created if missing.
	Dir string
	// Retention bounds the message history.
	Retention Retention
	// IdempotencyWindow is how long idempotency keys are remembered.
	IdempotencyWindow time.Duration
	// Logger receives the state machine's logs; nil discards them.
	Logger *slog.Logger
	// ObserveApply, if set, is called after each applied batch with, for
	// every entry in it, the time from the proposer's stamp on the entry
	// to now (across machines this includes their clock difference).
	ObserveApply func(delay time.Duration)
}

// Result is the outcome of one command of an applied entry.
type Result struct {
	// Index is the message index a publish was given (or, for a duplicate,
	// the index it was given the first time). Zero for other commands.
	Index uint64
	// Duplicate is set when an idempotency key matched an earlier publish.
	Duplicate bool
	// Err is set when the command was rejected; nothing changed.
	Err error
	// Entry is the Raft index of the entry that carried the command: once
	// a node's AppliedIndex reaches it, the command's effect is visible in
	// that node's store.
	Entry uint64
}

// FSM implements raft.FSM and raft.BatchingFSM over a bbolt store.
type FSM struct {
	cfg  Config
	log  *slog.Logger
	path string

	// mu guards db: readers and Apply take it shared, Restore takes it
	// exclusively to swap in a freshly restored store.
	mu sync.RWMutex
	db *bolt.DB

	// Mirrors of meta counters for lock-free status reads.
	appliedIndex atomic.Uint64
	lastMessage  atomic.Uint64
	firstMessage atomic.Uint64
	retainedSize atomic.Uint64 // bytes of retained message records

	notify notifier
	// watchers wakes the readers of what an applied batch changed.
	watchers watchers
	tail     tail // the newest messages, for readers near the end
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New opens a fresh, empty store in cfg.Dir, discarding any store left by a
// previous run: Raft restores the state from its snapshot and log.
func New(cfg Config) (*FSM, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	f := &FSM{cfg: cfg, log: cfg.Logger, path: filepath.Join(cfg.Dir, storeFile)}
	f.notify.init()
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale store: %w", err)
	}
	db, err := openStore(f.path)
	if err != nil {
		return nil, err
	}
	f.db = db
	if err := f.loadCounters(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

// openStore opens a bbolt file without fsync: the Raft log is the durable
// copy, and the store is rebuilt from it after a restart.
func openStore(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         5 * time.Second,
		NoSync:          true,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 2 << 30, // address space only: a long snapshot read must not block growth
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return db, nil
}

func (f *FSM) loadCounters() error {
	return f.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		f.appliedIndex.Store(getU64(meta, metaAppliedIndex))
		f.lastMessage.Store(getU64(meta, metaLastMessage))
		f.firstMessage.Store(getU64(meta, metaFirstMessage))
		f.retainedSize.Store(getU64(meta, metaBytes))
		return nil
	})
}

// Close closes the store. The FSM must not be used afterwards.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	f.tail.reset() // readers then reach the closed store and get its error
	err := f.db.Close()
	f.db = nil
	f.notify.broadcast()
	f.watchers.wakeAll()
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// AppliedIndex is the last Raft index applied.
func (f *FSM) AppliedIndex() uint64 { return f.appliedIndex.Load() }

// LastMessage is the highest message index assigned so far (0 if none).
func (f *FSM) LastMessage() uint64 { return f.lastMessage.Load() }

// FirstMessage is the oldest retained message index; LastMessage()+1 when
// no message is retained.
func (f *FSM) FirstMessage() uint64 { return f.firstMessage.Load() }

// RetainedMessages is how many messages the store retains.
func (f *FSM) RetainedMessages() uint64 {
	first, last := f.FirstMessage(), f.LastMessage()
	if first == 0 || last < first {
		return 0
	}
	return last - first + 1
}

// RetainedBytes is the size of the retained message records.
func (f *FSM) RetainedBytes() uint64 { return f.retainedSize.Load() }

// Changed returns a channel that is closed at the next change of state
// (entries applied, a restore, or Close). Take it before reading, so no
// change between the read and the wait is missed.
func (f *FSM) Changed() <-chan struct{} { return f.notify.wait() }

// Changes returns a channel that is closed at the next change of any of
// watches (see Watch), or when the state is replaced by a snapshot or
// closed; other changes leave it open. Call it before the read it guards,
// as with Changed, and call stop once no longer waiting (it may also be
// called after the channel closed), so that a wait on quiet watches leaves
// nothing behind.
func (f *FSM) Changes(watches ...Watch) (changed <-chan struct{}, stop func()) {
	return f.watchers.waitAny(watches)
}

// AfterChange calls fn, on a goroutine of its own, at the next change of
// any of watches (as Changes closes its channel); until then nothing
// waits, so an idle reader holds no goroutine. stop cancels the call and
// reports whether it did: false when fn has been or is being called.
func (f *FSM) AfterChange(watches []Watch, fn func()) (stop func() bool) {
	return f.watchers.after(watches, fn)
}

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// notifier hands out a channel that is closed and replaced on broadcast.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) init() { n.ch = make(chan struct{}) }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

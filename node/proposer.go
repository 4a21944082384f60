package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/raftlog"
)

// Batching limits: a Raft entry carries at most this many commands or bytes
// (a single larger proposal still goes alone).
const (
	maxBatchCommands = 512
	maxBatchBytes    = 2 << 20
	// applySlots is how many Raft entries (or forwarded batches) may be in
	// flight at once. While all are busy, new proposals queue and leave
	// together in the next entry: group commit that adds no latency when
	// the load is light.
	applySlots = 16
)

// ErrNoLeader: no leader could be reached within the write timeout.
var ErrNoLeader = raftlog.ErrNoLeader

// ErrOverloaded: the node's proposal queue stayed full for the whole write
// timeout. Nothing was sent; retry later.
var ErrOverloaded = errors.New("node overloaded: proposal queue full")

// ErrUncertain: the write was sent but its outcome is unknown (leadership
// was lost, the leader went away, or the deadline passed while in flight).
// It may have been committed; retry with an idempotency key.
var ErrUncertain = errors.New("write outcome unknown")

// ErrNotMember: this node is not (or no longer) a member of a cluster, so
// it cannot commit anything; send the write to a member. Nothing was sent.
var ErrNotMember = errors.New("this node is not a member of the cluster")

// ErrStorageFull: the leader could not write the entry to its Raft log
// because its disk is full. Nothing was committed; retry later.
var ErrStorageFull = errors.New("insufficient storage: the leader's disk is full")

type proposal struct {
	cmds []fsm.Command
	done chan proposalResult
}

type proposalResult struct {
	results []fsm.Result
	err     error
}

// proposer turns concurrent proposals into shared Raft entries on the
// leader, and into shared forwarded batches on a follower.
type proposer struct {
	raft         *raftlog.Raft
	fwd          *forwarder
	leaderURL    func() (string, error)
	writeTimeout time.Duration
	log          *slog.Logger
	metrics      *metrics

	in    chan *proposal
	slots chan struct{}
	stop  chan struct{}
}

func newProposer(r *raftlog.Raft, fwd *forwarder, leaderURL func() (string, error), writeTimeout time.Duration, log *slog.Logger, m *metrics) *proposer {
	return &proposer{
		raft: r, fwd: fwd, leaderURL: leaderURL, writeTimeout: writeTimeout, log: log, metrics: m,
		in:    make(chan *proposal, 8192),
		slots: make(chan struct{}, applySlots),
		stop:  make(chan struct{}),
	}
}

// Propose commits cmds (in one entry with other proposals) and returns one
// Result per command. It waits at most the write timeout for a leader.
// Every command is decoded and checked first: if one is malformed, none is
// proposed and the error wraps fsm.ErrInvalidCommand.
func (p *proposer) Propose(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if err := validateCommands(cmds); err != nil {
		return nil, err
	}
	pr := &proposal{cmds: cmds, done: make(chan proposalResult, 1)}
	if p.dispatchNow(ctx, pr) {
		res := <-pr.done
		return res.results, res.err
	}
	ctx, cancel := context.WithTimeout(ctx, p.writeTimeout)
	defer cancel()
	select {
	case p.in <- pr:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w for %s", ErrOverloaded, p.writeTimeout)
	case <-p.stop:
		return nil, errors.New("node is shutting down")
	}
	select {
	case res := <-pr.done:
		return res.results, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: no answer within %s", ErrUncertain, p.writeTimeout)
	}
}

// dispatchNow submits pr on the caller's goroutine when nothing waits in
// the queue and an apply slot is free: a proposal that could not share an
// entry anyway skips the two hand-offs (to run, then to a dispatching
// goroutine) that queueing costs, each a wait for a core on a busy
// machine. Once every slot is busy, proposals queue and leave together as
// before. It gives up at the write timeout or the caller's deadline, the
// earlier; like a dispatched batch, it does not stop when the caller's
// context is cancelled (the commit may be under way).
func (p *proposer) dispatchNow(ctx context.Context, pr *proposal) bool {
	if len(p.in) > 0 {
		return false
	}
	select {
	case p.slots <- struct{}{}:
	default:
		return false
	}
	defer func() { <-p.slots }()
	select {
	case <-p.stop:
		pr.done <- proposalResult{err: errors.New("node is shutting down")}
	default:
		deadline, _ := ctx.Deadline()
		p.dispatch([]*proposal{pr}, len(pr.cmds), deadline)
	}
	return true
}

// ProposeOne commits one command. Its error holds the command's rejection
// too (wrapping fsm.ErrInvalidCommand), so a caller handles one error.
func (p *proposer) ProposeOne(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	results, err := p.Propose(ctx, []fsm.Command{cmd})
	if err != nil {
		return fsm.Result{}, err
	}
	return results[0], results[0].Err
}

// validateCommands decodes and checks every command as apply will, so
// nothing malformed reaches the log.
func validateCommands(cmds []fsm.Command) error {
	for i, c := range cmds {
		if err := fsm.ValidateCommand(c); err != nil {
			return fmt.Errorf("command %d of %d: %w", i+1, len(cmds), err)
		}
	}
	return nil
}

// run gathers proposals into batches until stop is closed.
func (p *proposer) run() {
	for {
		select {
		case p.slots <- struct{}{}:
		case <-p.stop:
			return
		}
		var batch []*proposal
		select {
		case first := <-p.in:
			batch = append(batch, first)
		case <-p.stop:
			return
		}
		n, size := len(batch[0].cmds), cmdBytes(batch[0].cmds)
	drain:
		for n < maxBatchCommands && size < maxBatchBytes {
			select {
			case pr := <-p.in:
				batch = append(batch, pr)
				n += len(pr.cmds)
				size += cmdBytes(pr.cmds)
			default:
				break drain
			}
		}
		go func() {
			defer func() { <-p.slots }()
			p.dispatch(batch, n, time.Time{})
		}()
	}
}

func cmdBytes(cmds []fsm.Command) int {
	n := 0
	for _, c := range cmds {
		n += len(c)
	}
	return n
}

// dispatch commits batch as one entry and answers each proposal; it gives
// up at the write timeout, or at deadline when that comes first.
func (p *proposer) dispatch(batch []*proposal, n int, deadline time.Time) {
	cmds := make([]fsm.Command, 0, n)
	for _, pr := range batch {
		cmds = append(cmds, pr.cmds...)
	}
	if limit := time.Now().Add(p.writeTimeout); deadline.IsZero() || limit.Before(deadline) {
		deadline = limit
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	p.metrics.batchCommands.Observe(float64(len(cmds)))
	results, err := p.submit(ctx, cmds)
	if err == nil && len(results) != len(cmds) {
		err = fmt.Errorf("commit answered %d results for %d commands", len(results), len(cmds))
	}
	off := 0
	for _, pr := range batch {
		if err != nil {
			pr.done <- proposalResult{err: err}
			continue
		}
		pr.done <- proposalResult{results: results[off : off+len(pr.cmds)]}
		off += len(pr.cmds)
	}
}

// submit commits cmds as one entry: locally when leader, else through the
// leader. It retries only where nothing can have been appended (this node
// or the remote is not the leader, or the leader could not be dialled),
// and waits for a leader until ctx ends.
func (p *proposer) submit(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	backoff := 10 * time.Millisecond
	for {
		results, err := p.submitOnce(ctx, cmds)
		if err == nil || !errors.Is(err, errRetryable) {
			return results, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w within %s: %v", ErrNoLeader, p.writeTimeout, errors.Unwrap(err))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// errRetryable marks failures after which nothing was appended.
var errRetryable = errors.New("retryable")

// retryable wraps err so that errors.Is(…, errRetryable) holds while
// errors.Unwrap gives back err for messages.
func retryable(err error) error { return retryableError{err} }

type retryableError struct{ err error }

func (r retryableError) Error() string        { return r.err.Error() }
func (r retryableError) Unwrap() error        { return r.err }
func (r retryableError) Is(target error) bool { return target == errRetryable }

func (p *proposer) submitOnce(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if p.raft.IsLeader() {
		return p.applyLocal(ctx, cmds)
	}
	// Forwarding and waiting for a leader are for members: a node that was
	// removed, or not added yet, says so at once.
	if standing := p.raft.Standing(); standing != raftlog.StandingMember {
		return nil, fmt.Errorf("%w: %s", ErrNotMember, standing)
	}
	url, err := p.leaderURL()
	if err != nil {
		return nil, retryable(err)
	}
	p.metrics.forwardedBatches.Inc()
	return p.fwd.sendBatch(ctx, url, cmds)
}

// isNoSpace reports whether err is a full disk. Raft's log cache wraps the
// store's error as text, so the text is checked too.
func isNoSpace(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()))
}

// applyLocal appends cmds as one entry on this node, which must lead.
func (p *proposer) applyLocal(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	start := time.Now()
	_, resp, err := p.raft.Apply(ctx, fsm.EncodeEntry(time.Now().UnixNano(), cmds))
	switch {
	case errors.Is(err, raftlog.ErrNotLeader), errors.Is(err, raftlog.ErrTransferring):
		return nil, retryable(err)
	case errors.Is(err, raftlog.ErrLeadershipLost), errors.Is(err, raftlog.ErrTimeout):
		return nil, fmt.Errorf("%w: %w", ErrUncertain, err)
	case isNoSpace(err):
		// Raft failed to store the entry in the leader's own log, before
		// sending it to anyone, and stepped down: nothing was committed.
		return nil, fmt.Errorf("%w: %w", ErrStorageFull, err)
	case err != nil:
		if standing := p.raft.Standing(); standing == raftlog.StandingShutdown || standing == raftlog.StandingRemoved {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotMember, standing, err)
		}
		return nil, fmt.Errorf("commit: %w", err)
	}
	p.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	p.metrics.entries.Inc()
	switch resp := resp.(type) {
	case []fsm.Result:
		return resp, nil
	case error: // the entry could not be decoded (it never comes from this code)
		return nil, fmt.Errorf("commit: %w", resp)
	}
	return nil, fmt.Errorf("commit: unexpected state machine response %T", resp)
}

// proposeLocal commits on this node only, failing with raftlog.ErrNotLeader
// if it does not lead. The leader uses it for batches forwarded to it, so a
// batch never hops twice.
func (p *proposer) proposeLocal(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if !p.raft.IsLeader() {
		return nil, raftlog.ErrNotLeader
	}
	return p.Propose(ctx, cmds)
}

func (p *proposer) close() { close(p.stop) }

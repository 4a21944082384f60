package signalr

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// maxPendingInvocations bounds the relay invocations a connection may have
// queued behind the one being committed; a client that sends more is not
// read until some complete (TCP pushes back), as ASP.NET's per-client
// invocation limit does.
const maxPendingInvocations = 64

// invoker commits a connection's relay invocations in the order the client
// sent them, without making the client wait for one commit before its next
// invocation is read: while one batch is being committed, later
// invocations queue, and the next batch takes all of them in one proposal.
// One batch is in flight at a time, so a follower that forwards batches to
// the leader never reorders a connection's sends. Its goroutine runs only
// while invocations are queued.
type invoker struct {
	mu      sync.Mutex
	queue   []pendingInvocation
	running bool
	space   *sync.Cond // signalled when the queue shrinks
}

// pendingInvocation is a relay invocation waiting for its commit.
type pendingInvocation struct {
	id     string // the invocation id; "" for fire-and-forget
	target string // the method, for error messages
	relay  Relay
	group  *groupChange // a JoinGroup or LeaveGroup counted against the group limit
}

// enqueue queues an invocation, waiting while the queue is full, and
// starts the committing goroutine if none runs.
func (c *conn) enqueueInvocation(p pendingInvocation) {
	inv := &c.inv
	inv.mu.Lock()
	if inv.space == nil {
		inv.space = sync.NewCond(&inv.mu)
	}
	for len(inv.queue) >= maxPendingInvocations && !c.isDone() {
		inv.space.Wait()
	}
	inv.queue = append(inv.queue, p)
	start := !inv.running
	inv.running = true
	inv.mu.Unlock()
	if start {
		go c.commitInvocations()
	}
}

// commitInvocations commits queued invocations, a batch per proposal, and
// completes each, until the queue is empty.
func (c *conn) commitInvocations() {
	inv := &c.inv
	for {
		inv.mu.Lock()
		batch := inv.queue
		inv.queue = nil
		if len(batch) == 0 {
			inv.running = false
			inv.mu.Unlock()
			return
		}
		inv.space.Broadcast()
		inv.mu.Unlock()
		relays := make([]Relay, len(batch))
		for i, p := range batch {
			relays[i] = p.relay
		}
		ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.ProposeTimeout)
		res, err := c.srv.cluster.Relay(ctx, c.hub, c.id, relays)
		cancel()
		if err == nil && len(res) != len(batch) {
			err = fmt.Errorf("the cluster answered %d outcomes for %d relay invocations", len(res), len(batch))
		}
		if err == nil {
			c.awaitLocalCopies(res)
		}
		for i, p := range batch {
			c.settleGroupChange(p.group, outcomeOf(err, res, i)) // before the client hears of it
			switch {
			case err != nil:
				c.complete(p.id, nil, fmt.Sprintf("Failed to invoke '%s': %v", p.target, err))
			case res[i].Err != nil:
				c.complete(p.id, nil, fmt.Sprintf("Failed to invoke '%s': %v", p.target, res[i].Err))
			case res[i].Index == 0:
				c.complete(p.id, nil, "")
			default:
				c.complete(p.id, strconv.AppendUint(nil, res[i].Index, 10), "")
			}
		}
	}
}

// awaitLocalCopies waits, within ProposeTimeout, until this node has
// queued the batch's messages to their local recipients, the caller
// included: its completions then come after its own copies.
func (c *conn) awaitLocalCopies(res []RelayOutcome) {
	var last uint64
	for _, r := range res {
		if r.Err == nil {
			last = max(last, r.Index)
		}
	}
	if last == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.ProposeTimeout)
	defer cancel()
	if !c.srv.waitDispatched(ctx, last) {
		c.srv.log.Warn("completing before the local copies were queued", "conn", c.id, "index", last)
	}
}

// wakeInvokers releases a reader waiting for queue space on an ended
// connection.
func (c *conn) wakeInvokers() {
	c.inv.mu.Lock()
	if c.inv.space != nil {
		c.inv.space.Broadcast()
	}
	c.inv.mu.Unlock()
}

package signalr

import (
	"errors"
	"fmt"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// ErrUpgrading means a stateful connection's stream cannot carry an
// application's value, a stream item or a call to the client yet: a
// member of the cluster runs a version that would not apply them (the
// cluster's feature level is below 1).
var ErrUpgrading = errors.New("the cluster is being upgraded: results, streams and calls to the client on stateful connections wait until every member runs a version that knows them")

// valuesAllowed reports whether the cluster's feature level lets a
// stateful connection's stream carry values, items and calls, waiting up
// to Options.UpgradeWait (or the connection's end) for it to be raised.
func (c *conn) valuesAllowed() error {
	if c.srv.cluster.FeatureLevel() >= 1 {
		return nil
	}
	deadline := time.NewTimer(c.srv.opts.UpgradeWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if c.srv.cluster.FeatureLevel() >= 1 {
				return nil
			}
		case <-c.done:
			return ErrConnectionEnded
		case <-deadline.C:
			return ErrUpgrading
		}
	}
}

// A stateful connection's invocations run one at a time on its queue, in
// the order the client sent them, and each is committed with its client
// sequence number before the next: the log applies a connection's
// numbered messages in order, and a later number would make an earlier
// one a duplicate. The client is acknowledged only up to what is
// committed (handled), so a client whose node dies resends the rest to
// the node it resumes on; an Application may see such an invocation
// twice, and its completion reaches the client once.

// runStatefulInvocation runs one invocation of a stateful connection:
// a relay method, the Application's, or the error answer.
func (c *conn) runStatefulInvocation(m *hubproto.Message, seq uint64) {
	switch {
	case c.forApplication(m):
		c.invokeApplicationStateful(m, seq)
	case m.Type == hubproto.StreamInvocation:
		c.commitInvocation(&Invocation{InvocationID: m.InvocationID, ClientSeq: seq, Error: streamInvocationError(m.Target)})
	default:
		c.invokeStateful(m, seq)
	}
}

// invokeApplicationStateful runs an Application invocation and commits
// its completion. A stream invocation is numbered (committed) when it
// starts; its items and its end are committed as they come, unnumbered,
// while later invocations run.
func (c *conn) invokeApplicationStateful(m *hubproto.Message, seq uint64) {
	inv := &Invocation{InvocationID: m.InvocationID, ClientSeq: seq}
	if inv.Error = c.overRate(m); inv.Error != "" {
		c.dropUploads(m)
		c.commitInvocation(inv)
		return
	}
	if err := c.valuesAllowed(); err != nil {
		c.dropUploads(m)
		inv.Error = fmt.Sprintf("Failed to invoke '%s': %v", m.Target, err)
		c.commitInvocation(inv)
		return
	}
	call := c.newCall(m)
	if m.Type == hubproto.StreamInvocation {
		start := &Invocation{ClientSeq: seq, InvocationID: m.InvocationID, StreamStart: true} // no completion yet
		if err := c.commitInvocation(start); err != nil {
			c.dropUploads(m)
			return // refused (the connection closed) or given up on (it is closing)
		}
		go c.runStream(call, c.recordStreamItem, func(comp Completion) {
			c.commitInvocation(&Invocation{InvocationID: m.InvocationID, StreamEnd: true, Error: completionError(m.Target, comp)})
		})
		return
	}
	comp := c.runCall(call)
	if inv.Error = completionError(m.Target, comp); inv.Error == "" && comp.HasResult {
		inv.Value, inv.HasValue = comp.Result, true
	}
	c.commitInvocation(inv)
}

// recordStreamItem commits one item of a stream to a stateful connection's
// stream: the client gets it in order with everything else, from any node.
func (c *conn) recordStreamItem(id string, item hubproto.RawValue) error {
	if c.isEnding() {
		return ErrConnectionEnded
	}
	if err := c.valuesAllowed(); err != nil {
		return err
	}
	return c.commitInvocation(&Invocation{InvocationID: id, Item: true, Value: item})
}

// completionError is the error text an Application's completion carries.
func completionError(target string, comp Completion) string {
	if comp.Unknown {
		return unknownMethod(target)
	}
	return comp.Error
}

// handled notes that the client's messages up to seq are committed.
func (c *conn) handled(seq uint64) {
	mb := c.mb
	mb.mu.Lock()
	mb.handled = max(mb.handled, seq)
	mb.mu.Unlock()
}

// cloneMessage copies an invocation out of the receive buffer, for work
// that runs after the buffer is reused.
func cloneMessage(m *hubproto.Message) *hubproto.Message {
	out := *m
	out.Arguments = make([]hubproto.RawValue, len(m.Arguments))
	for i, a := range m.Arguments {
		out.Arguments[i] = hubproto.RawValue{Format: a.Format, Data: append([]byte(nil), a.Data...)}
	}
	out.StreamIDs = append([]string(nil), m.StreamIDs...)
	return &out
}

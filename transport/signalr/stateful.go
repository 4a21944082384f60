package signalr

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/netconn"
)

// Stateful reconnect (hub messages Ack and Sequence) on WebSockets, for
// clients that negotiated it and shook hands with version 2. The
// connection's outgoing stream — messages addressed to it and completions
// of its invocations — is read from the replicated state by position
// (Cluster.ReadConnection), so any node can rebuild it; the holder buffers
// what the client has not acknowledged and checkpoints the acknowledged
// position once a second. Client messages are numbered and applied once:
// the cluster drops a resent duplicate (Invocation.ClientSeq).

// Limits of the unacknowledged buffer (ASP.NET's default is 100,000
// bytes). When it is full, reading the log pauses: the log is the buffer.
const (
	statefulBufferBytes = 100_000
	statefulBufferCount = 1024
	feedBatch           = 128
)

type bufferedEvent struct {
	seq uint64
	pos fsm.Position
	rec []byte
}

// messageBuffer is what a stateful connection keeps for stateful
// reconnect, as ASP.NET's MessageBuffer does: the numbering of the events
// it sends and of the client's messages, and the events the client has not
// acknowledged yet. mu guards it; never call into the cluster while
// holding it.
type messageBuffer struct {
	mu           sync.Mutex
	nextPos      fsm.Position // events after it are not buffered yet
	outSeq       uint64       // sequence id of the last buffered event
	unacked      []bufferedEvent
	unackedBytes int
	ackSeq       uint64 // the client's latest Ack and its position
	ackPos       fsm.Position
	checkpointed uint64 // the last ackSeq replicated
	inSeq        uint64 // trackable client messages received
	applied      uint64 // client messages up to this one were already applied
	// handled: client messages up to this one are committed (or needed
	// nothing committed); the Ack says no more, so that a client whose
	// node dies resends what was not committed.
	handled     uint64
	lastAckSent uint64
	attached    bool // a socket is writing: buffered events go out at once
	awaiting    bool // after a resume: client input is ignored until its Sequence
	// feed runs fill while there is something to read (see startFeed); nil
	// until the connection starts feeding.
	feed atomic.Pointer[netconn.Pump]
}

func newMessageBuffer() *messageBuffer {
	return &messageBuffer{attached: true}
}

// poke makes the feed read the connection's stream again (an Ack made
// room, an invocation was committed).
func (mb *messageBuffer) poke() {
	if feed := mb.feed.Load(); feed != nil {
		feed.Wake()
	}
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// startFeed starts moving the connection's events from the log into its
// buffer (and to the client when a socket is attached) until the
// connection ends. Nothing waits while there is nothing to read: the
// store starts a reader at the next message of the connection's hub or
// change of its own state (an invocation committed, a takeover applied),
// as do an Ack
// that makes room and the dispatcher's poke (fill asks for that wake-up
// before each read, so none is missed).
func (c *conn) startFeed() {
	mb := c.mb
	// Its stream changes with its hub's messages and its own state (its
	// invocations' completions, a takeover).
	watches := []fsm.Watch{fsm.MessagesOf(c.hub), fsm.ConnectionOf(c.hub, c.id)}
	feed := netconn.NewPump(func(wake func()) func() bool {
		return c.srv.cluster.AfterChange(watches, wake)
	}, func() bool { c.fill(); return true }, func() {})
	mb.feed.Store(feed)
	if c.isEnding() { // stopFeed may have run before the Store
		feed.Finish()
		return
	}
	go feed.Run()
}

// stopFeed ends the feed of a connection that ended.
func (mb *messageBuffer) stopFeed() {
	if feed := mb.feed.Load(); feed != nil {
		feed.Finish()
	}
}

func (c *conn) fill() {
	mb, p := c.mb, c.protocolOf()
	for !c.isEnding() {
		mb.feed.Load().Arm()
		mb.mu.Lock()
		room := mb.unackedBytes < statefulBufferBytes && len(mb.unacked) < statefulBufferCount
		after := mb.nextPos
		mb.mu.Unlock()
		if !room {
			return
		}
		events, open, err := c.srv.cluster.ReadConnection(c.hub, c.id, after, feedBatch)
		if errors.Is(err, fsm.ErrStreamTrimmed) {
			c.end("Connection closed with an error: the messages it missed are no longer retained", true, "stream trimmed")
			return
		}
		if err != nil {
			c.srv.log.Warn("read connection stream", "conn", c.id, "err", err)
			return
		}
		if !open || len(events) == 0 {
			return // a closed connection is ended by the reaper
		}
		mb.mu.Lock()
		for i := range events {
			if events[i].Skip {
				mb.nextPos = events[i].Pos
				continue
			}
			if mb.unackedBytes >= statefulBufferBytes || len(mb.unacked) >= statefulBufferCount {
				break // full: the rest is read again after an Ack
			}
			rec, err := encodeEvent(p, &events[i])
			if err != nil {
				c.srv.log.Error("encode stream event", "conn", c.id, "err", err)
				rec = nil
			}
			mb.outSeq++
			mb.unacked = append(mb.unacked, bufferedEvent{seq: mb.outSeq, pos: events[i].Pos, rec: rec})
			mb.unackedBytes += len(rec)
			mb.nextPos = events[i].Pos
			if mb.attached && rec != nil {
				c.send(rec)
			}
		}
		mb.mu.Unlock()
	}
}

func encodeEvent(p hubproto.Protocol, e *fsm.ConnEvent) ([]byte, error) {
	if e.Message != nil {
		return hubproto.AppendInvocationArgs(p, nil, e.Message.Target, e.Message.Arguments, e.Message.MsgpackArguments)
	}
	if e.Item {
		return p.Append(nil, &hubproto.Message{Type: hubproto.StreamItem, InvocationID: e.InvocationID, Item: storedValue(e)})
	}
	if e.Call {
		if e.ValueFormat != byte(hubproto.FormatJSON) {
			return nil, fmt.Errorf("a call to the client with arguments in format %d", e.ValueFormat)
		}
		args, err := splitArguments(e.Value)
		if err != nil {
			return nil, err
		}
		return p.Append(nil, &hubproto.Message{Type: hubproto.Invocation, InvocationID: e.InvocationID, Target: e.Target, Arguments: args})
	}
	m := hubproto.Message{Type: hubproto.Completion, InvocationID: e.InvocationID, Error: e.Error}
	if e.HasValue {
		m.Result, m.HasResult = storedValue(e), true
	} else if e.HasResult {
		m.Result, m.HasResult = hubproto.JSONValue(strconv.AppendUint(nil, e.Result, 10)), true
	}
	return p.Append(nil, &m)
}

// storedValue is an Application's value as the log keeps it.
func storedValue(e *fsm.ConnEvent) hubproto.RawValue {
	return hubproto.RawValue{Format: hubproto.Format(e.ValueFormat), Data: e.Value}
}

// handleStateful numbers and acts on a client message of a stateful
// connection.
func (c *conn) handleStateful(m *hubproto.Message) {
	mb := c.mb
	mb.mu.Lock()
	if mb.awaiting && m.Type != hubproto.Sequence {
		mb.mu.Unlock()
		return // sent before the client saw our Sequence: it will resend
	}
	switch m.Type {
	case hubproto.Sequence:
		mb.awaiting = false
		if m.SequenceID > 0 {
			mb.inSeq = uint64(m.SequenceID) - 1
		}
		mb.mu.Unlock()
		return
	case hubproto.Ack:
		c.acked(uint64(max(m.SequenceID, 0)))
		mb.mu.Unlock()
		mb.poke()
		return
	}
	if !m.Type.Trackable() {
		mb.mu.Unlock()
		c.handle(m)
		return
	}
	mb.inSeq++
	seq := mb.inSeq
	duplicate := seq <= mb.applied
	mb.mu.Unlock()
	if duplicate {
		return
	}
	switch m.Type {
	case hubproto.Invocation, hubproto.StreamInvocation:
		// Committed in order on the connection's queue (appstateful.go),
		// so that the read loop goes on reading pings, stream items and
		// cancellations while an invocation runs.
		inv := cloneMessage(m)
		c.enqueueApp(appWork{seq: seq, run: func() { c.runStatefulInvocation(inv, seq) }})
	default: // StreamItem, Completion, CancelInvocation
		if !c.receiveStreamMessage(m) && m.Type == hubproto.Completion {
			c.receiveCompletion(m) // a client result (clientresult.go)
		}
		c.enqueueApp(appWork{seq: seq}) // handled in its turn
	}
}

// acked trims the buffer up to a client Ack; mb.mu is held.
func (c *conn) acked(seq uint64) {
	mb := c.mb
	n := 0
	for n < len(mb.unacked) && mb.unacked[n].seq <= seq {
		mb.unackedBytes -= len(mb.unacked[n].rec)
		mb.ackSeq, mb.ackPos = mb.unacked[n].seq, mb.unacked[n].pos
		n++
	}
	mb.unacked = append(mb.unacked[:0], mb.unacked[n:]...)
}

// invokeStateful commits an invocation with its client sequence number;
// its completion comes back through the log.
// The limits apply as on other connections; a refusal is an error
// completion, which for a stateful connection also goes through the log
// (its completions are numbered there).
func (c *conn) invokeStateful(m *hubproto.Message, seq uint64) {
	inv := &Invocation{InvocationID: m.InvocationID, ClientSeq: seq}
	var group *groupChange
	if inv.Error = c.overRate(m); inv.Error == "" {
		var relay Relay
		if relay, inv.Error = c.relayCommand(m); inv.Error == "" {
			if group, inv.Error = c.admitGroupChange(m); inv.Error == "" {
				inv.Relay = &relay
			}
		}
	}
	err := c.commitInvocation(inv)
	c.settleGroupChange(group, outcomeOfOne(err))
}

// commitInvocation proposes until the cluster answers: the sequence number
// makes a retry safe. A connection that cannot commit for long is closed
// with allowReconnect; the client resumes and resends. It returns the last
// proposal's error: nil, a rejection, or the error it gave up on.
func (c *conn) commitInvocation(inv *Invocation) error {
	inv.Hub, inv.ConnID = c.hub, c.id
	deadline := time.Now().Add(3 * c.srv.opts.ProposeTimeout)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.ProposeTimeout)
		_, err := c.srv.cluster.RecordInvocation(ctx, *inv)
		cancel()
		if err == nil || errors.Is(err, ErrRejected) {
			// Committed; a rejected one (the connection closed
			// meanwhile) is final too.
			c.mb.poke() // its completion is read once this node applied the entry
			return err
		}
		if time.Now().After(deadline) || c.isEnding() {
			c.srv.log.Warn("commit invocation", "conn", c.id, "err", err)
			c.end("Connection closed with an error: the cluster did not commit the invocation", true, "invocation not committed")
			return err
		}
		select {
		case <-c.srv.ctx.Done():
			return c.srv.ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// prepareResume readies a stateful connection for a new socket: the
// client gets our Sequence first, then every unacknowledged event in
// order; its input is ignored until its own Sequence.
func (c *conn) prepareResume() {
	mb := c.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	c.out.clear()
	first := mb.outSeq + 1
	if len(mb.unacked) > 0 {
		first = mb.unacked[0].seq
	}
	mb.applied = max(mb.applied, mb.inSeq)
	mb.awaiting, mb.attached = true, true
	mb.lastAckSent = 0 // an Ack queued before the drop was discarded above
	p := c.protocolOf()
	seqRec, _ := p.Append(nil, &hubproto.Message{Type: hubproto.Sequence, SequenceID: int64(first)})
	c.send(seqRec)
	for _, e := range mb.unacked {
		if e.rec != nil {
			c.send(e.rec)
		}
	}
}

// ackAndCheckpoint sends Acks to clients whose received count grew and
// replicates, in one command for all of this node's connections, the
// positions their clients acknowledged.
func (s *Server) ackAndCheckpoint() {
	s.mu.RLock()
	var conns []*conn
	for _, c := range s.byID {
		if c.mb != nil {
			conns = append(conns, c)
		}
	}
	s.mu.RUnlock()
	var cps []Checkpoint
	var marks []func()
	for _, c := range conns {
		mb := c.mb
		mb.mu.Lock()
		if mb.attached && !mb.awaiting && mb.handled > mb.lastAckSent {
			mb.lastAckSent = mb.handled
			rec, _ := c.protocolOf().Append(nil, &hubproto.Message{Type: hubproto.Ack, SequenceID: int64(mb.handled)})
			c.send(rec)
		}
		if mb.ackSeq > mb.checkpointed {
			seq := mb.ackSeq
			cps = append(cps, Checkpoint{Hub: c.hub, ConnID: c.id, Seq: seq, Pos: mb.ackPos})
			marks = append(marks, func() {
				mb.mu.Lock()
				mb.checkpointed = max(mb.checkpointed, seq)
				mb.mu.Unlock()
			})
		}
		mb.mu.Unlock()
	}
	if len(cps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
	defer cancel()
	if err := s.cluster.Checkpoint(ctx, cps); err != nil {
		s.log.Warn("replicate acknowledged positions", "connections", len(cps), "err", err)
		return
	}
	for _, mark := range marks {
		mark()
	}
}

// statefulLoop runs ackAndCheckpoint once a second until the server stops.
func (s *Server) statefulLoop() {
	s.runEvery(time.Second, func(time.Time) { s.ackAndCheckpoint() })
}

// resumeElsewhere serves the resume of a stateful connection this node
// does not hold: it is forwarded to the holder, or, when the holder is
// this node's earlier run or cannot be reached, taken over here.
func (s *Server) resumeElsewhere(w http.ResponseWriter, r *http.Request, token string, state fsm.StatefulConnection) {
	if s.refuseWhileDraining(w, r) {
		return // a draining node takes nothing over: the relaying member does
	}
	if state.Hub != r.PathValue("hub") {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	adopt := func(w http.ResponseWriter, r *http.Request) { s.adopt(w, r, token, state) }
	if state.NodeID != s.cluster.NodeID() && !s.relayed(r) {
		s.forward(w, r, state.NodeID, adopt)
		return
	}
	adopt(w, r)
}

// adopt takes over a stateful connection from the replicated state: its
// numbering restarts at the last replicated checkpoint, which the client
// had acknowledged, and its stream is read again from the log after it.
func (s *Server) adopt(w http.ResponseWriter, r *http.Request, token string, state fsm.StatefulConnection) {
	id, ok := s.authenticateAs(w, r, state.UserID)
	if !ok {
		return
	}
	p := hubproto.Lookup(state.Protocol)
	if p == nil {
		http.Error(w, "No Connection with that ID (unknown protocol)", http.StatusNotFound)
		return
	}
	// Held (as opening) before the takeover commits, so the start-up
	// orphan sweep never mistakes it for a connection of an earlier run.
	c := s.newConn(state.Hub, state.ConnID, token, Identity{UserID: state.UserID, Expires: id.Expires, Permissions: id.Permissions, Claims: id.Claims})
	c.appTold.Store(true) // the node that opened it told the Application
	c.out.setMax(max(s.opts.OutboundQueue, statefulBufferCount+64))
	c.adopting(p, newMessageBuffer())
	s.addPending(c)
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ProposeTimeout)
	defer cancel()
	entry, err := s.cluster.TakeOver(ctx, Opening{Hub: state.Hub, ConnID: state.ConnID, UserID: state.UserID,
		Stateful: true, Protocol: state.Protocol, TokenHash: tokenHash(token)})
	if err != nil {
		s.forget(c)
		s.log.Info("could not take over a stateful connection", "conn", state.ConnID, "err", err)
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	c.tookOver(entry)
	mb := c.mb
	mb.nextPos, mb.outSeq, mb.ackSeq, mb.ackPos, mb.checkpointed = state.AckPos, state.AckSeq, state.AckSeq, state.AckPos, state.AckSeq
	mb.applied, mb.inSeq, mb.handled, mb.attached = state.ClientSeq, state.ClientSeq, state.ClientSeq, false
	s.activate(c)
	s.log.Info("took over a stateful connection", "conn", c.id, "hub", c.hub, "from", state.NodeID, "acked", state.AckSeq)
	c.startFeed()
	s.resumeWebSocket(w, r, c, true)
}

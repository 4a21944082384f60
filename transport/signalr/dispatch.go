package signalr

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
)

// dispatchBatch is how many messages the dispatcher reads at a time.
const dispatchBatch = 1024

// wakeEvery bounds how many messages the dispatcher queues before it wakes
// the connections they went to. Waking once per run of messages, not per
// message, lets a connection's writer put the whole run in one frame (one
// write system call instead of one per message) and spares the dispatcher
// a wake-up per message and connection; the bound keeps the first
// message's wait for its wake-up short when a page is long.
const wakeEvery = 16

// Under heavy fan-out the dispatcher lingers before reading the next page,
// so that messages committed meanwhile are queued, and written, together:
// when delivering a page took at least lingerAfter (many recipients), it
// waits as long again, at most maxLinger. Light traffic (a delivery that
// takes microseconds) never waits, so it costs the latency nothing.
const (
	lingerAfter = time.Millisecond
	maxLinger   = 2 * time.Millisecond
)

// dispatchLoop follows the replicated log from its end at start-up and
// hands each committed message to the local connections it addresses. It
// reads each message once per node and encodes it once per protocol, and
// never blocks on a client: a full client queue closes that client.
func (s *Server) dispatchLoop() {
	after := s.cluster.LastMessage()
	s.markDispatched(after)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		changed := s.cluster.Changed()
		page, err := s.cluster.ReadAll(after, dispatchBatch)
		if err != nil {
			s.log.Error("dispatcher read", "after", after, "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
				continue
			}
		}
		if page.Reset {
			s.log.Warn("dispatcher fell behind retention; messages were skipped", "after", after, "oldest", page.Oldest)
		}
		start := time.Now()
		clear(s.pageGroups)
		for i := range page.Messages {
			s.deliver(&page.Messages[i])
			if (i+1)%wakeEvery == 0 {
				s.wakeQueued()
			}
		}
		s.wakeQueued()
		if page.Next > after {
			after = page.Next
			s.markDispatched(after)
			if len(page.Messages) == dispatchBatch {
				continue
			}
		}
		if spent := time.Since(start); spent >= lingerAfter {
			linger.Reset(min(spent, maxLinger))
			select {
			case <-s.ctx.Done():
				return
			case <-linger.C:
			}
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-changed:
		}
	}
}

// dispatchMark is how far the dispatcher has handed messages to local
// connections: every message up to index has been queued to each of its
// local recipients. advanced is closed (and replaced) when index grows.
type dispatchMark struct {
	mu       sync.Mutex
	index    uint64
	advanced chan struct{}
}

// markDispatched records that every message up to index is queued.
func (s *Server) markDispatched(index uint64) {
	d := &s.dispatched
	d.mu.Lock()
	defer d.mu.Unlock()
	if index <= d.index {
		return
	}
	d.index = index
	if d.advanced != nil {
		close(d.advanced)
		d.advanced = nil
	}
}

// waitDispatched waits until the message at index has been queued to its
// local recipients, or ctx ends (false). An invocation completes after
// that, so its caller's own copy (and every local recipient's) is queued
// before the completion, as on one ASP.NET server.
func (s *Server) waitDispatched(ctx context.Context, index uint64) bool {
	d := &s.dispatched
	for {
		d.mu.Lock()
		if d.index >= index {
			d.mu.Unlock()
			return true
		}
		if d.advanced == nil {
			d.advanced = make(chan struct{})
		}
		ch := d.advanced
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
}

// encodedMessage encodes a message at most once per protocol.
type encodedMessage struct {
	m       *fsm.Message
	json    []byte
	msgpack []byte
}

func (e *encodedMessage) record(p hubproto.Protocol) []byte {
	if p.TransferFormat() == hubproto.TransferFormatText {
		if e.json == nil {
			e.json = hubproto.AppendInvocationJSON(nil, e.m.Target, e.m.Arguments)
		}
		return e.json
	}
	if e.msgpack == nil {
		rec, err := hubproto.AppendInvocationArgs(p, nil, e.m.Target, e.m.Arguments, e.m.MsgpackArguments)
		if err != nil {
			return nil
		}
		e.msgpack = rec
	}
	return e.msgpack
}

// deliver sends one message to its local recipients.
func (s *Server) deliver(m *fsm.Message) {
	recipients := s.recipients(m)
	if len(recipients) == 0 {
		return
	}
	enc := encodedMessage{m: m}
	for _, c := range recipients {
		if rec := enc.record(c.protocolOf()); rec != nil && c.queueQuiet(rec) {
			s.toWake = append(s.toWake, c)
		}
	}
	if observe := s.opts.ObserveDispatch; observe != nil {
		observe(time.Since(time.Unix(0, m.Time)))
	}
}

// wakeQueued wakes the connections deliver queued records to since the
// last call.
func (s *Server) wakeQueued() {
	for i, c := range s.toWake {
		c.notify()
		s.toWake[i] = nil
	}
	s.toWake = s.toWake[:0]
}

// groupReads holds the group members the dispatcher read for the current
// page of the log, by hub and group. A page of messages to the same group
// (a chat room's traffic) costs one read of the state machine instead of
// one per message. Each read is of the state after the whole page was
// applied, so the members seen are as current as a read per message
// would give.
type groupReads map[hubGroup][]fsm.GroupMember

// hubGroup names a group of a hub.
type hubGroup struct{ hub, group string }

// pageGroupMembers reads a group's members at most once per page.
func (s *Server) pageGroupMembers(hub, group string) ([]fsm.GroupMember, error) {
	k := hubGroup{hub, group}
	if members, ok := s.pageGroups[k]; ok {
		return members, nil
	}
	members, err := s.cluster.GroupMembers(hub, group)
	if err != nil {
		return nil, err
	}
	if s.pageGroups == nil {
		s.pageGroups = groupReads{}
	}
	s.pageGroups[k] = members
	return members, nil
}

// recipients lists the active local connections a message is for, in
// s.scratch (the dispatcher is one goroutine, so it reuses one slice and
// allocates nothing per message for a send to all). Stateful connections
// read their own stream from the log (so that any node can rebuild it):
// they are woken instead.
func (s *Server) recipients(m *fsm.Message) []*conn {
	var groupMembers []fsm.GroupMember
	if m.Audience == fsm.ToGroups {
		s.mu.RLock()
		_, any := s.hubs[m.Hub]
		s.mu.RUnlock()
		if !any {
			return nil
		}
		for _, g := range m.Names {
			members, err := s.pageGroupMembers(m.Hub, g)
			if err != nil {
				s.log.Error("read group members", "hub", m.Hub, "group", g, "err", err)
				continue
			}
			groupMembers = append(groupMembers, members...)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.hubs[m.Hub]
	if h == nil {
		return nil
	}
	for c := range h.stateful {
		c.mb.poke()
	}
	out := s.scratch[:0]
	add := func(c *conn) {
		if c != nil && c.mb == nil && c.hub == m.Hub && !slices.Contains(m.Excluded, c.id) {
			out = append(out, c)
		}
	}
	switch m.Audience {
	case fsm.ToAll:
		for c := range h.conns {
			add(c)
		}
	case fsm.ToConnections:
		for _, id := range m.Names {
			add(s.byID[id])
		}
	case fsm.ToUsers, fsm.ToGroups:
		for _, u := range m.Names {
			if m.Audience == fsm.ToUsers {
				for c := range h.users[u] {
					add(c)
				}
			}
		}
		for _, mem := range groupMembers {
			switch mem.Kind {
			case fsm.MemberConnection:
				add(s.byID[mem.Name])
			case fsm.MemberUser:
				for c := range h.users[mem.Name] {
					add(c)
				}
			}
		}
	}
	if len(m.Names) > 1 || len(groupMembers) > 0 {
		// Several names (or a connection in a group both directly and
		// through its user) can name a connection twice.
		slices.SortFunc(out, func(a, b *conn) int { return strings.Compare(a.id, b.id) })
		out = slices.CompactFunc(out, func(a, b *conn) bool { return a == b })
	}
	s.scratch = out
	return out
}

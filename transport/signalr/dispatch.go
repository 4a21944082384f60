package signalr

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
)

// dispatchBatch is how many messages the dispatcher reads at a time.
const dispatchBatch = 1024

// dispatchLoop follows the replicated log from its end at start-up and
// hands each committed message to the local connections it addresses. It
// reads each message once per node and encodes it once per protocol, and
// never blocks on a client: a full client queue closes that client.
func (s *Server) dispatchLoop() {
	after := s.cluster.LastMessage()
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
		for i := range page.Messages {
			s.deliver(&page.Messages[i])
		}
		if page.Next > after {
			after = page.Next
			if len(page.Messages) == dispatchBatch {
				continue
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-changed:
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
		rec, err := hubproto.AppendInvocationMsgpack(nil, e.m.Target, e.m.Arguments)
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
		if rec := enc.record(c.protocolOf()); rec != nil {
			c.send(rec)
		}
	}
	if observe := s.opts.ObserveDispatch; observe != nil {
		observe(time.Since(time.Unix(0, m.Time)))
	}
}

// recipients lists the active local connections a message is for, in
// s.scratch (the dispatcher is one goroutine, so it reuses one slice and
// allocates nothing per message for a send to all). Stateful connections
// read their own stream from the log (so that any node can rebuild it):
// they are woken instead.
func (s *Server) recipients(m *fsm.Message) []*conn {
	var groupMembers []fsm.Member
	if m.Audience == fsm.ToGroups {
		s.mu.RLock()
		_, any := s.hubs[m.Hub]
		s.mu.RUnlock()
		if !any {
			return nil
		}
		for _, g := range m.Names {
			members, err := s.cluster.GroupMembers(m.Hub, g)
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
		c.st.poke()
	}
	out := s.scratch[:0]
	add := func(c *conn) {
		if c != nil && c.st == nil && c.hub == m.Hub && !slices.Contains(m.Excluded, c.id) {
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

// reapLoop ends negotiated connections that never connected, long-polling
// connections whose client stopped polling, connections whose token
// expired, and clients silent past the client timeout.
func (s *Server) reapLoop() {
	tick := time.NewTicker(min(time.Second, s.opts.KeepAlive/3))
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			s.reap(now)
		}
	}
}

func (s *Server) reap(now time.Time) {
	// Closes and takeovers come through the log: look for them only when
	// the store changed since the last sweep (an idle node reads nothing).
	applied := s.cluster.AppliedIndex()
	storeChanged := applied != s.lastReapApplied
	s.lastReapApplied = applied
	for _, c := range s.heldConns() {
		c.mu.Lock()
		transport, polling, pollEnded, pingSeen, ended, attached := c.transport, c.polling, c.pollEnded, c.pingSeen, c.ended, c.attached
		active, openEntry := c.active, c.openEntry
		detached := c.st != nil && c.sock == nil && !c.detachedAt.IsZero()
		sock := c.sock
		hasSocket := sock != nil
		detachedAt := c.detachedAt
		c.mu.Unlock()
		if sock != nil {
			sock.retireIdle(now)
		}
		switch {
		case c.isDone():
			// An ended long-polling connection whose client never polled
			// again.
			if now.Sub(ended) > s.opts.DisconnectTimeout {
				s.forget(c)
			}
		case detached && now.Sub(detachedAt) > s.opts.DisconnectTimeout:
			c.end("", false, "not resumed in time")
		case active && storeChanged && s.closedByCluster(c, openEntry):
			c.abort("closed through the REST API or expired by the cluster")
		case !c.expires.IsZero() && now.After(c.expires):
			c.end("", true, "access token expired")
		case transport == "" && now.Sub(c.created) > s.opts.DisconnectTimeout:
			c.end("", false, "negotiated but never connected")
		case transport == transportLongPolling && !polling && now.Sub(pollEnded) > s.opts.DisconnectTimeout:
			c.end("", false, "long-polling client stopped polling")
			s.forget(c) // nobody is polling to be told
		case transport != "" && transport != transportLongPolling && pingSeen && !detached &&
			now.Sub(time.Unix(0, c.lastSeen.Load())) > s.opts.ClientTimeout:
			// A detached stateful connection hears nothing from its
			// client: DisconnectTimeout alone decides.
			c.end("Connection closed with an error: client timeout", true, "client timeout")
		case transport != "" && c.protocolOf() == nil && now.Sub(attached) > s.opts.HandshakeTimeout:
			c.end("", false, "handshake timeout")
		case transport == transportWebSockets && hasSocket && now.Sub(time.Unix(0, c.lastWrite.Load())) >= s.opts.KeepAlive:
			if p := c.protocolOf(); p != nil {
				c.lastWrite.Store(now.UnixNano())
				c.send(p.PingRecord())
			}
		}
	}
}

// expireOrphans removes from the replicated state the connections that an
// earlier run of this node held: they died with it. It waits until this
// node has caught up with the log, and retries until it succeeds once.
func (s *Server) expireOrphans() {
	backoff := time.Second
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if s.expireOrphansOnce() {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Server) expireOrphansOnce() bool {
	if !s.cluster.Ready() {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
	defer cancel()
	n, err := s.cluster.ExpireConnections(ctx, s.cluster.NodeID(), "holder restarted", s.holdsConnection())
	if err != nil {
		s.log.Warn("expire connections of an earlier run", "err", err)
		return false
	}
	if n > 0 {
		s.log.Info("expired connections held by an earlier run of this node", "count", n)
	}
	return true
}

// holdsConnection returns a function that reports whether this node holds
// a connection, active or still opening, as of the function's first call.
func (s *Server) holdsConnection() func(hub, connID string) bool {
	var held map[string]bool
	return func(hub, connID string) bool {
		if held == nil {
			s.mu.RLock()
			held = make(map[string]bool, len(s.byToken))
			for _, c := range s.byToken {
				held[c.hub+"\x00"+c.id] = true
			}
			s.mu.RUnlock()
		}
		return held[hub+"\x00"+connID]
	}
}

// closedByCluster reports whether the replicated state no longer records an
// active connection as open: someone closed it through the REST API. It
// only trusts the store once it has applied the entry that opened the
// connection.
func (s *Server) closedByCluster(c *conn, openEntry uint64) bool {
	if openEntry == 0 || s.cluster.AppliedIndex() < openEntry {
		return false
	}
	holder, open, err := s.cluster.ConnectionHolder(c.hub, c.id)
	if err == nil && open && holder != s.cluster.NodeID() {
		// A stateful connection resumed on another node: let go of it
		// without closing it in the cluster.
		c.mu.Lock()
		c.movedAway = true
		c.mu.Unlock()
		c.end("", false, "resumed on node "+holder)
		return false
	}
	return err == nil && !open
}

package signalr2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/backplane/backplane/fsm"
)

// readResult is what a connection's cursor read found.
type readResult struct {
	msgs   []fsm.Message // addressed to the connection, in index order
	next   uint64        // the cursor after them
	reset  bool          // messages after the cursor were trimmed by retention
	oldest uint64        // the oldest retained message (with reset)
	// groups are the connection's groups per hub (only hubs with some),
	// each sorted.
	groups map[string][]string
	gone   bool // a record of the connection is missing: it was closed
	moved  bool // another node holds the connection
}

// readOnce reads what the connection has not received after the cursor.
// Its groups are read after the log position it reads up to, so each
// message is matched against a membership at least as recent as the
// message: a member of a group when a message to it was committed is never
// passed over because this read came too early.
func (s *Server) readOnce(c *conn, after uint64) (readResult, error) {
	last := s.cluster.LastMessage()
	res := readResult{next: after, groups: map[string][]string{}}
	for _, hub := range c.hubs {
		holder, open, err := s.cluster.Holder(hub, c.id)
		if err != nil {
			return res, fmt.Errorf("read the connection's record: %w", err)
		}
		if !open {
			res.gone = true
			return res, nil
		}
		if holder != s.cluster.NodeID() {
			res.moved = true
		}
		groups, err := s.cluster.Groups(hub, c.id, c.user)
		if err != nil {
			return res, fmt.Errorf("read the connection's groups: %w", err)
		}
		if len(groups) > 0 {
			slices.Sort(groups)
			res.groups[hub] = slices.Compact(groups)
		}
	}
	if last <= after {
		return res, nil
	}
	next := last
	for _, hub := range c.hubs {
		f := &fsm.Filter{Hub: hub, Broadcast: true, Groups: res.groups[hub], Connections: []string{c.id}, Self: c.id}
		if c.user != "" {
			f.Users = []string{c.user}
		}
		page, err := s.cluster.Read(f, after, readBatch)
		if err != nil {
			return res, fmt.Errorf("read hub %s after %d: %w", hub, after, err)
		}
		if page.Reset {
			res.reset, res.oldest = true, page.Oldest
			return res, nil
		}
		next = min(next, page.Next)
		res.msgs = append(res.msgs, page.Messages...)
	}
	// Each hub's page may stop at a different index: keep what every
	// hub was read up to, the rest is read again next time.
	res.msgs = slices.DeleteFunc(res.msgs, func(m fsm.Message) bool { return m.Index > next })
	if len(c.hubs) > 1 {
		slices.SortFunc(res.msgs, func(a, b fsm.Message) int { return cmpIndex(a.Index, b.Index) })
	}
	res.next = max(next, after)
	return res, nil
}

func cmpIndex(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// errWaitDone: a wait that ended because its time was up.
var errWaitDone = errors.New("wait over")

// waitRead waits until there is something to tell the client: messages,
// a reset, a change of its groups (from known), its record gone, or (with
// holderHere) another node holding it. It returns what it last read when
// maxWait passes (then with errWaitDone) or ctx ends (with ctx's error).
func (s *Server) waitRead(ctx context.Context, c *conn, after uint64, known map[string][]string, maxWait time.Duration, holderHere bool) (readResult, error) {
	// Everything that can change the answer (a message, a group change,
	// the record's close or move, a snapshot restore) is a change the
	// store announces to the connection's watches: no periodic look is
	// needed, and other connections' and hubs' traffic does not wake it.
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	watches := c.watches()
	for {
		changed, stop := s.cluster.Changes(watches...)
		res, err := s.readOnce(c, after)
		if err != nil || res.gone || res.reset || len(res.msgs) > 0 || (holderHere && res.moved) ||
			!sameGroups(res.groups, known) {
			stop()
			return res, err
		}
		after = res.next
		err = waitChange(ctx, timer.C, changed)
		stop()
		if err != nil {
			return res, err
		}
	}
}

// waitChange waits for changed, and returns ctx's error when it ends
// first, or errWaitDone when timeout fires first.
func waitChange(ctx context.Context, timeout <-chan time.Time, changed <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout:
		return errWaitDone
	case <-changed:
		return nil
	}
}

// waitRecords waits up to recordWait for the connection's records to
// reach this node's store (a connect through another node commits them a
// moment earlier), and reports whether they are still missing then. With
// held it waits for records that name this node as the holder: after this
// node committed them, its own store may apply them a moment after the
// leader answered.
func (s *Server) waitRecords(ctx context.Context, c *conn, held bool) (missing bool, err error) {
	deadline := time.NewTimer(recordWait)
	defer deadline.Stop()
	self := s.cluster.NodeID()
	watches := c.watches()
	for {
		changed, stop := s.cluster.Changes(watches...)
		missing, err = s.recordsMissing(c, held, self)
		if err != nil || !missing {
			stop()
			return missing, err
		}
		err = waitChange(ctx, deadline.C, changed)
		stop()
		switch {
		case errors.Is(err, errWaitDone):
			return true, nil
		case err != nil:
			return true, err
		}
	}
}

// recordsMissing reports whether one of the connection's records is not
// open in this node's store (or, with held, names another holder).
func (s *Server) recordsMissing(c *conn, held bool, self string) (bool, error) {
	missing := false
	for _, hub := range c.hubs {
		holder, open, err := s.cluster.Holder(hub, c.id)
		if err != nil {
			return false, fmt.Errorf("read the connection's record: %w", err)
		}
		missing = missing || !open || held && holder != self
	}
	return missing, nil
}

// groupsOf returns the groups in a client's groups token, or nil when it
// has none or the token does not verify (then it counts as no groups, as
// in ASP.NET SignalR 2).
func (s *Server) groupsOf(tok, connID string) map[string][]string {
	if tok == "" {
		return nil
	}
	groups, err := s.groups.openGroupsToken(tok, connID)
	if err != nil {
		s.log.Debug("groups token ignored", "conn", connID, "err", err)
		return nil
	}
	return groups
}

// watches is what a connection waits on: in each of its hubs, the
// messages, its record and groups, and its user's groups.
func (c *conn) watches() []fsm.Watch {
	ws := make([]fsm.Watch, 0, 3*len(c.hubs))
	for _, hub := range c.hubs {
		ws = append(ws, fsm.MessagesOf(hub), fsm.ConnectionOf(hub, c.id))
		if c.user != "" {
			ws = append(ws, fsm.UserOf(hub, c.user))
		}
	}
	return ws
}

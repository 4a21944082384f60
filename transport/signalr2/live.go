package signalr2

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Liveness. The node that recorded a connection (its /connect or latest
// /reconnect) holds it, and closes its record once the client has been
// gone for the disconnect timeout (plus 5 s, as ASP.NET SignalR 2 waits),
// as the SignalR 2 server raises OnDisconnected. A long-polling client's
// polls may reach any node: a node that serves polls of a connection held
// elsewhere tells the holder so every TouchInterval, in one request per
// holder; when the holder cannot be reached at all, it takes the
// connection over (records it with itself as holder).

// liveness is what this node knows about the connections it serves.
type liveness struct {
	mu   sync.Mutex
	held map[string]*heldConn // connections this node holds, by id
	seen map[string]*seenConn // connections held elsewhere whose polls this node served
	// serving counts the transport requests of a connection in progress
	// here (from the moment their token is verified), with its hubs.
	serving map[string]*servingConn
}

type servingConn struct {
	hubs []string
	n    int
}

type heldConn struct {
	user     string
	hubs     []string
	lastSeen time.Time
	active   int // requests of the connection in progress here
}

type seenConn struct {
	holder      string
	user        string
	hubs        []string
	groupsToken string
	lastSeen    time.Time
	reported    time.Time
}

func newLiveness() *liveness {
	return &liveness{held: map[string]*heldConn{}, seen: map[string]*seenConn{}, serving: map[string]*servingConn{}}
}

// serve records that a transport request of c is in progress here, from
// before its connection is recorded (so that Holds claims a connection
// while its open is being committed); the returned function records its
// end.
func (l *liveness) serve(c *conn) (end func()) {
	if len(c.hubs) == 0 {
		return func() {}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := l.serving[c.id]
	if sc == nil {
		sc = &servingConn{hubs: c.hubs}
		l.serving[c.id] = sc
	}
	sc.n++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if sc.n--; sc.n == 0 && l.serving[c.id] == sc {
			delete(l.serving, c.id)
		}
	}
}

// holds reports whether this node serves the connection in hub, or has
// served it in this run and has not seen it end.
func (l *liveness) holds(hub, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.held[id]; h != nil && slices.Contains(h.hubs, hub) {
		return true
	}
	if sc := l.seen[id]; sc != nil && slices.Contains(sc.hubs, hub) {
		return true
	}
	sc := l.serving[id]
	return sc != nil && slices.Contains(sc.hubs, hub)
}

// hold records that this node holds c.
func (l *liveness) hold(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, c.id)
	h := l.held[c.id]
	if h == nil {
		h = &heldConn{}
		l.held[c.id] = h
	}
	h.user, h.hubs, h.lastSeen = c.user, c.hubs, time.Now()
}

// begin records a request of c served here; holder is the node that holds
// it. The returned function records its end.
func (l *liveness) begin(c *conn, self, holder, groupsToken string) (end func()) {
	if len(c.hubs) == 0 {
		return func() {}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if holder == self {
		h := l.held[c.id]
		if h == nil {
			h = &heldConn{user: c.user, hubs: c.hubs}
			l.held[c.id] = h
		}
		h.active++
		h.lastSeen = now
		return func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			h.active--
			h.lastSeen = time.Now()
		}
	}
	sc := l.seen[c.id]
	if sc == nil {
		sc = &seenConn{}
		l.seen[c.id] = sc
	}
	sc.holder, sc.user, sc.hubs, sc.lastSeen = holder, c.user, c.hubs, now
	if groupsToken != "" {
		sc.groupsToken = groupsToken
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		sc.lastSeen = time.Now()
	}
}

// touched records that other nodes served these connections just now.
func (l *liveness) touched(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, id := range ids {
		if h := l.held[id]; h != nil {
			h.lastSeen = now
		}
	}
}

// forget drops a connection that was closed, and returns what this node
// knew of it as its holder (nil if it did not hold it).
func (l *liveness) forget(id string) *heldConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[id]
	delete(l.held, id)
	delete(l.seen, id)
	return h
}

// counts reports how many connections this node holds and how many
// others' it serves.
func (l *liveness) counts() (held, seen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held), len(l.seen)
}

// due is one pass of the reaper's bookkeeping: the held connections whose
// client is gone (removed), and per holder the connections to report.
func (l *liveness) due(now time.Time, gone, touchEvery time.Duration) (expired map[string]*heldConn, reports map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	expired = map[string]*heldConn{}
	reports = map[string][]string{}
	for id, h := range l.held {
		if h.active == 0 && now.Sub(h.lastSeen) > gone {
			expired[id] = h
			delete(l.held, id)
		}
	}
	for id, sc := range l.seen {
		switch {
		case now.Sub(sc.lastSeen) > gone:
			delete(l.seen, id)
		case sc.lastSeen.After(sc.reported) && now.Sub(sc.reported) >= touchEvery:
			sc.reported = now
			reports[sc.holder] = append(reports[sc.holder], id)
		}
	}
	return expired, reports
}

// seenConn returns a copy of what is known of a connection held elsewhere.
func (l *liveness) seenCopy(id string) (seenConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc, ok := l.seen[id]
	if !ok {
		return seenConn{}, false
	}
	return *sc, true
}

// reapLoop closes the connections whose client is gone and reports polls
// to the holders, once a second.
func (s *Server) reapLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			s.reapOnce(now)
		}
	}
}

// goneAfter is how long a client may be silent before its connection is
// closed: the disconnect timeout, plus the 5 s ASP.NET SignalR 2 adds.
func (s *Server) goneAfter() time.Duration { return s.opts.DisconnectTimeout + 5*time.Second }

func (s *Server) reapOnce(now time.Time) {
	expired, reports := s.live.due(now, s.goneAfter(), s.opts.TouchInterval)
	s.calls.prune(now, s.goneAfter())
	for id, h := range expired {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
		err := s.cluster.Close(ctx, id, h.hubs, true, "client gone")
		cancel()
		s.calls.drop(id)
		switch {
		case err == nil:
			s.log.Debug("closed a connection whose client is gone", "conn", id)
			s.tellDisconnected(id, h.user, h.hubs, nil, "client gone")
		case errors.Is(err, ErrRejected):
			// Another node holds it now (the client reconnected there),
			// or its record was closed while the client was away (a REST
			// DELETE): then nobody told the Application yet.
			if len(h.hubs) == 0 {
				break
			}
			if _, open, err := s.cluster.Holder(h.hubs[0], id); err == nil && !open {
				s.tellDisconnected(id, h.user, h.hubs, nil, msgClosed)
			}
		default:
			s.log.Warn("close a connection whose client is gone", "conn", id, "err", err)
		}
	}
	for holder, ids := range reports {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		err := s.cluster.Touch(ctx, holder, ids)
		cancel()
		if err == nil {
			continue
		}
		if !s.cluster.IsUnreachable(err) {
			s.log.Debug("report polls to the holder", "holder", holder, "err", err)
			continue
		}
		for _, id := range ids {
			s.takeOver(id, holder)
		}
	}
}

// takeOver records on this node a connection whose holder is down, so
// that it is not expired with the holder's connections while its client
// polls on. Hubs whose record is gone already are restored with the
// groups of its last groups token.
func (s *Server) takeOver(id, holder string) {
	sc, ok := s.live.seenCopy(id)
	if !ok {
		return
	}
	c := &conn{id: id, user: sc.user, hubs: sc.hubs}
	o := Opening{ConnID: id, UserID: sc.user, Hubs: sc.hubs}
	tokenGroups := s.groupsOf(sc.groupsToken, id)
	for _, hub := range sc.hubs {
		h, open, err := s.cluster.Holder(hub, id)
		if err != nil {
			return
		}
		if open && h != holder {
			return // it moved meanwhile
		}
		if !open && len(tokenGroups[hub]) > 0 {
			if o.Rejoin == nil {
				o.Rejoin = map[string][]string{}
			}
			o.Rejoin[hub] = tokenGroups[hub]
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
	defer cancel()
	if err := s.cluster.Open(ctx, o); err != nil {
		s.log.Warn("take over a connection whose holder is down", "conn", id, "holder", holder, "err", err)
		return
	}
	s.log.Info("took over a long-polling connection whose holder is down", "conn", id, "holder", holder)
	s.live.hold(c)
}

// touchRequest is the body of the node-to-node touch request.
type touchRequest struct {
	Connections []string `json:"connections"`
}

// maxTouchBody bounds a touch request.
const maxTouchBody = 4 << 20

// ServeTouch answers a member's report that it served polls of
// connections this node holds (the node guards the route: members only).
func (s *Server) ServeTouch(w http.ResponseWriter, r *http.Request) {
	var req touchRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTouchBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.live.touched(req.Connections)
	w.WriteHeader(http.StatusNoContent)
}

// TouchBody encodes a touch request for the node's peer client.
func TouchBody(connIDs []string) []byte {
	b, _ := json.Marshal(touchRequest{Connections: connIDs}) // strings: cannot fail
	return b
}

package signalr2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/backplane/backplane/transport/netconn"
)

// mode is which transport request a client made.
type mode int

const (
	modeConnect   mode = iota // /connect: a new connection
	modeReconnect             // /reconnect: resume after messageId, on any node
	modePoll                  // /poll: a long poll after messageId
)

// Messages of the "E" envelope, after which the client stops (its
// application sees the error and the disconnected event, and starts a new
// connection).
const (
	msgClosed = "The connection was closed by the server: start a new connection."
	msgReset  = "Messages after this connection's position (%d) are no longer retained (the oldest is %d): start a new connection."
)

// serveTransport serves /connect, /reconnect and /poll.
func (s *Server) serveTransport(w http.ResponseWriter, r *http.Request, m mode) {
	c, ok := s.openRequest(w, r)
	if !ok {
		return
	}
	cl := &netconn.Cleanups{}
	defer cl.Done()
	cl.Add(s.live.serve(c))
	switch {
	case c.transport == "":
		writeError(w, http.StatusBadRequest, errors.New("Protocol error: Unknown transport."))
		return
	case m == modePoll && c.transport != transportLongPoll:
		writeError(w, http.StatusBadRequest, errors.New("Protocol error: /poll is for the longPolling transport."))
		return
	case c.transport == transportWebSockets && !isUpgrade(r):
		writeError(w, http.StatusBadRequest, errors.New("Not a valid websocket request."))
		return
	}
	if s.opts.ConnLimit != nil {
		release, err := s.opts.ConnLimit.Acquire(r)
		if err != nil {
			writeError(w, http.StatusTooManyRequests, err)
			return
		}
		cl.Add(release)
	}
	if !s.ready(w, r) {
		return
	}
	var after uint64
	var tokenGroups map[string][]string
	groupsTok := ""
	if m == modeConnect {
		admitted, ok := s.admit(w, r, c)
		if !ok {
			return
		}
		after = s.cluster.LastMessage() // before the record: later sends to it follow
		if err := s.open(r.Context(), Opening{ConnID: c.id, UserID: c.user, Hubs: c.hubs, Rejoin: admitted}); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("record the connection: %w", err))
			return
		}
		s.live.hold(c)
		s.tellConnected(c)
	} else {
		msgID, err := formValue(w, r, "messageId")
		if err == nil {
			groupsTok, err = formValue(w, r, "groupsToken")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		switch {
		case msgID != "":
			if after, err = parseCursor(msgID); err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
		case m == modePoll:
			writeError(w, http.StatusBadRequest, errors.New("Protocol error: a poll needs messageId."))
			return
		default: // a reconnect before the first message: from now
			after = s.cluster.LastMessage()
		}
		tokenGroups = s.groupsOf(groupsTok, c.id)
		if m == modeReconnect {
			if err := s.reopen(r.Context(), c, tokenGroups); err != nil {
				writeError(w, http.StatusServiceUnavailable, fmt.Errorf("record the connection: %w", err))
				return
			}
		}
	}
	if m != modePoll {
		// This node recorded the connection: wait until its own store
		// says so, or the first read would find it missing or elsewhere.
		if missing, err := s.waitRecords(r.Context(), c, true); err != nil || missing {
			if err == nil {
				writeError(w, http.StatusServiceUnavailable, errors.New("the connection's record did not reach this node's store in time: retry"))
			}
			return
		}
	}
	switch c.transport {
	case transportLongPoll:
		s.serveLongPoll(w, r, c, m, after, tokenGroups, groupsTok)
	case transportSSE:
		s.serveSSE(w, r, c, m, after, tokenGroups, cl)
	default:
		s.serveWebSocket(w, r, c, m, after, tokenGroups, cl)
	}
}

// open records a connection on this node.
func (s *Server) open(ctx context.Context, o Opening) error {
	if len(o.Hubs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ProposeTimeout)
	defer cancel()
	return s.cluster.Open(ctx, o)
}

// reopen records a reconnecting connection on this node, its new holder.
// Hubs where its record is gone (closed while the client was away, e.g.
// expired with a dead holder's connections) are restored with the groups
// of its verified groups token; where the record is there, the replicated
// membership stands.
func (s *Server) reopen(ctx context.Context, c *conn, tokenGroups map[string][]string) error {
	o := Opening{ConnID: c.id, UserID: c.user, Hubs: c.hubs}
	for _, hub := range c.hubs {
		_, open, err := s.cluster.Holder(hub, c.id)
		if err != nil {
			return err
		}
		if !open && len(tokenGroups[hub]) > 0 {
			if o.Rejoin == nil {
				o.Rejoin = map[string][]string{}
			}
			o.Rejoin[hub] = tokenGroups[hub]
		}
	}
	if err := s.open(ctx, o); err != nil {
		return err
	}
	s.live.hold(c)
	return nil
}

// holderOf is the node that holds c ("" when it has no hubs).
func (s *Server) holderOf(c *conn) string {
	if len(c.hubs) == 0 {
		return s.cluster.NodeID()
	}
	h, _, err := s.cluster.Holder(c.hubs[0], c.id)
	if err != nil || h == "" {
		return s.cluster.NodeID()
	}
	return h
}

// serveLongPoll answers /connect at once with the init envelope, and
// /poll and /reconnect with the first messages after the cursor (or an
// empty envelope after the connection timeout).
func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request, c *conn, m mode, after uint64, known map[string][]string, groupsTok string) {
	if m == modeConnect {
		env := envelope{Cursor: after, Init: true}
		writeJSONBytes(w, env.append(nil))
		return
	}
	if m == modePoll {
		closed, err := s.waitRecords(r.Context(), c, false)
		if err != nil {
			return // the client went away
		}
		if closed {
			s.ended(c, msgClosed)
			env := envelope{Cursor: after, Error: msgClosed}
			writeJSONBytes(w, env.append(nil))
			return
		}
	}
	defer s.live.begin(c, s.cluster.NodeID(), s.holderOf(c), groupsTok)()
	ctx, cancel := s.clientContext(r.Context(), c)
	defer cancel()
	s.serving.polls.Add(1)
	res, err := s.waitRead(ctx, c, after, known, s.opts.ConnectionTimeout, false)
	s.serving.polls.Add(-1)
	env, ok := s.answer(ctx, c, after, res, err, known)
	if !ok {
		return
	}
	writeJSONBytes(w, env.append(nil))
}

// answer turns a wait's outcome into the envelope for the client; ok is
// false when there is nothing to write (the client went away).
func (s *Server) answer(ctx context.Context, c *conn, after uint64, res readResult, err error, known map[string][]string) (envelope, bool) {
	switch {
	case err != nil && ctx.Err() != nil:
		if s.draining(ctx) {
			return envelope{Cursor: after, Reconnect: true}, true
		}
		return envelope{}, false
	case err != nil && !errors.Is(err, errWaitDone):
		s.log.Warn("read for a SignalR 2 connection", "conn", c.id, "err", err)
		return envelope{}, false
	case res.gone:
		s.ended(c, msgClosed)
		return envelope{Cursor: after, Error: msgClosed}, true
	case res.reset:
		return envelope{Cursor: after, Error: fmt.Sprintf(msgReset, after, res.oldest)}, true
	}
	env := envelope{Cursor: res.next, Messages: res.msgs}
	if !sameGroups(res.groups, known) {
		env.Groups = s.groups.groupsToken(c.id, res.groups)
	}
	return env, true
}

// draining reports whether ctx ended because the node shuts down.
func (s *Server) draining(ctx context.Context) bool {
	return s.opts.Draining != nil && errors.Is(context.Cause(ctx), s.opts.Draining)
}

// clientContext ends when the client's token expires.
func (s *Server) clientContext(ctx context.Context, c *conn) (context.Context, context.CancelFunc) {
	if c.ident.Expires.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, c.ident.Expires)
}

// keepAliveEvery is how often an idle stream writes a keep-alive.
func (s *Server) keepAliveEvery() time.Duration { return s.opts.KeepAlive }

package signalr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/internal/monotime"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/hubproto"
)

// Transport names, as negotiate lists them.
const (
	transportWebSockets  = "WebSockets"
	transportSSE         = "ServerSentEvents"
	transportLongPolling = "LongPolling"
)

// conn is one SignalR connection held by this node. Its phase (phase.go)
// says where it is in its life; the transports add what they need.
type conn struct {
	srv     *Server
	id      string // public connection id
	token   string // secret; names this node
	hub     string
	user    string
	expires time.Time
	perms   access.Permissions // what the token grants (RelayRoles)
	claims  []Claim            // the token's claims, for the Application
	// tokenUser is the user the access token named, which later requests
	// must name too; user differs only when the Application's Admission
	// gave the connection another user id.
	tokenUser string
	// rawQuery is the negotiate's query string, kept raw (a parsed
	// url.Values costs ~0.6 KiB per idle connection) and parsed only when
	// the Application is told of the connection (info).
	rawQuery string

	mu       sync.Mutex
	life     life       // phase, bound transport, open entry (phase.go)
	poll     *pollState // long polling only; set by the first poll
	protocol hubproto.Protocol
	finalRec []byte // the Close record to send last, if any
	// Stateful reconnect: offered at negotiate; mb is set once the
	// handshake (or a takeover) turned it on, and never changes after.
	statefulOffered bool
	mb              *messageBuffer
	sock            *socket // the attached WebSocket, nil when detached

	inMu  sync.Mutex // serialises inbound data (POSTs may race)
	inbuf []byte     // client bytes not parsed yet; inMu guards it
	inv   invoker    // commits relay invocations in order, pipelined
	// app: the Application's invocations and streams, and a stateful
	// connection's message order (appcall.go); made on first use (appSt),
	// as most connections never need it.
	app atomic.Pointer[appState]
	// admitGroups are joined once the connection is open (the
	// Application's Admission); appTold is set once the Application was
	// told it is open (or, taken over, it was told on another node), and
	// closeError is the error the client was given at its end.
	admitGroups []string
	appTold     atomic.Bool
	closeError  string
	limits      connLimits // invocation rate, groups joined, count at its address
	out         *outQueue
	done        chan struct{}
	doneOnce    sync.Once
	lastSeen    atomic.Int64 // monotime of the last client message
	lastWrite   atomic.Int64 // monotime of the last WebSocket write
}

// newConn makes a negotiated connection of a hub, for the client id.
func (s *Server) newConn(hub, connID, token string, id Identity) *conn {
	now := time.Now()
	c := &conn{
		srv: s, id: connID, token: token, hub: hub, user: id.UserID, expires: id.Expires, perms: id.Permissions, claims: id.Claims, tokenUser: id.UserID,
		life: life{phase: phaseNegotiated, since: now},
		out:  newOutQueue(s.opts.OutboundQueue), done: make(chan struct{}),
	}
	c.lastSeen.Store(monotime.At(now))
	c.lastWrite.Store(monotime.At(now))
	return c
}

var (
	errChangeTransport = errors.New("Cannot change transports mid-connection")
	errConcurrent      = errors.New("Another request is already using this connection")
)

func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// send queues a record for the client. A client that lets its queue fill
// up is disconnected with allowReconnect: it never slows anyone else.
func (c *conn) send(rec []byte) {
	if c.isDone() {
		return
	}
	if c.out.push(rec) {
		c.wakeWriter()
	} else {
		c.cutSlow()
	}
}

// queueQuiet queues a record without waking the writer, for the
// dispatcher, which wakes each connection once for a run of messages (see
// notify). wake is true when this record made the queue non-empty, so the
// caller must notify the connection.
func (c *conn) queueQuiet(rec []byte) (wake bool) {
	if c.isDone() {
		return false
	}
	ok, first := c.out.pushQuiet(rec)
	if !ok {
		c.cutSlow()
		return false
	}
	return first
}

// queuePing queues a keep-alive Ping and wakes what sends it, except an
// idle WebSocket's writer: it claims that writer and returns the socket,
// whose writer the caller must then run (the reaper's writeIdle).
func (c *conn) queuePing(rec []byte) *socket {
	if !c.queueQuiet(rec) {
		return nil // ended, cut, or a wake is already on its way
	}
	c.out.signal() // a waiting SSE stream or poll, or a lingering writer
	sock := c.socketOf()
	if sock == nil || !sock.writing.CompareAndSwap(false, true) {
		return nil // no socket, or its running writer was just signalled
	}
	return sock
}

// notify wakes whatever sends the queue: a WebSocket's writer, or a
// waiting SSE stream or poll.
func (c *conn) notify() {
	c.out.signal()
	c.wakeWriter()
}

// cutSlow ends a connection whose queue is full: a client that lets its
// queue fill up is disconnected with allowReconnect.
func (c *conn) cutSlow() {
	c.srv.slowClientCut(c, "outbound queue full")
	c.end("Connection closed with an error: the client did not keep up", true, "slow client")
}

// end closes the connection once. When the server ends it (with an error,
// or allowing reconnect), the client gets a Close message before the
// transport closes; an end the client asked for (its Close, a DELETE) gets
// none. A long-polling connection keeps its token until its next poll has
// told the client (Close or 204), or until the reaper forgets it.
func (c *conn) end(errMsg string, allowReconnect bool, why string) {
	c.doneOnce.Do(func() {
		c.mu.Lock()
		c.closeError = errMsg
		if c.protocol != nil && why != "" && (errMsg != "" || allowReconnect) {
			c.finalRec = c.protocol.AppendClose(nil, errMsg, allowReconnect)
		}
		e := c.enterClosing()
		c.mu.Unlock()
		c.releaseAddress()
		finish := func() {
			c.enterEnded()   // a pending poll answers with the queue and the Close
			c.wakeWriter()   // a WebSocket's writer sends the rest and closes it
			c.wakeInvokers() // a reader waiting for invocation space stops waiting
			c.endApplication()
			c.srv.remove(c, e.keepToken)
			c.srv.log.Debug("connection ended", "conn", c.id, "hub", c.hub, "reason", why)
		}
		switch {
		case e.movedAway:
			finish() // its new holder owns the record now
		case e.stateful:
			// The close must be committed before the client hears of it:
			// a resume racing to another node must find it closed.
			c.srv.closing.Add(1)
			go func() {
				defer c.srv.closing.Add(-1)
				c.srv.recordClose(c, why)
				finish()
			}()
		default:
			finish()
			if e.recorded {
				c.srv.goRecordClose(c, why)
			}
		}
	})
}

// abort ends the connection with a plain Close, as ASP.NET's
// Context.Abort() does: the client stops and does not reconnect.
func (c *conn) abort(why string) {
	c.mu.Lock()
	if c.protocol != nil && c.life.phase < phaseClosing {
		c.finalRec = c.protocol.AppendClose(nil, "", false)
	}
	c.mu.Unlock()
	c.end("", false, why)
}

// takeFinal returns the Close record to write last, once.
func (c *conn) takeFinal() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.finalRec
	c.finalRec = nil
	return rec
}

// drain appends queued records to buf, up to max bytes.
func (c *conn) drain(buf []byte, max int) []byte {
	if len(buf) >= max {
		return buf
	}
	return c.out.take(buf, max)
}

// receive feeds client bytes (a WebSocket message or a POST body) to the
// connection: the handshake first, then hub messages. An error closes the
// connection.
func (c *conn) receive(data []byte) {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if c.isEnding() {
		return
	}
	c.lastSeen.Store(monotime.Now())
	c.inbuf = append(c.inbuf, data...)
	if c.protocolOf() == nil {
		if !c.handshake() {
			return
		}
	}
	p := c.protocolOf()
	msgs, consumed, err := p.Parse(c.inbuf, c.srv.opts.MaxMessageSize)
	c.inbuf = c.inbuf[consumed:]
	for i := range msgs {
		if c.isEnding() {
			return
		}
		if c.mb != nil {
			c.handleStateful(&msgs[i])
		} else {
			c.handle(&msgs[i])
		}
	}
	if err != nil {
		if errors.Is(err, hubproto.ErrMessageTooLarge) {
			c.end(fmt.Sprintf("Connection closed with an error: message larger than the %d-byte limit", c.srv.opts.MaxMessageSize), false, "message too large")
			return
		}
		c.end("Connection closed with an error: "+err.Error(), false, "malformed message")
		return
	}
	if len(c.inbuf) > c.srv.opts.MaxMessageSize+16 {
		c.end(fmt.Sprintf("Connection closed with an error: message larger than the %d-byte limit", c.srv.opts.MaxMessageSize), false, "message too large")
	}
	if len(c.inbuf) == 0 {
		c.inbuf = nil
	}
}

// receiveEarly keeps client bytes posted before the first transport
// request; startReceiving parses them once a transport is bound. It
// reports false, keeping nothing, past MaxMessageSize of early bytes.
func (c *conn) receiveEarly(data []byte) bool {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if len(c.inbuf)+len(data) > c.srv.opts.MaxMessageSize {
		return false
	}
	c.inbuf = append(c.inbuf, data...)
	return true
}

// startReceiving parses what the client posted before its transport was
// bound.
func (c *conn) startReceiving() {
	c.inMu.Lock()
	early := len(c.inbuf) > 0 && c.protocolOf() == nil
	c.inMu.Unlock()
	if early {
		c.receive(nil)
	}
}

// extendExpiry moves the connection's expiry to a fresh token's, if later.
func (c *conn) extendExpiry(expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.expires.IsZero() && (expires.IsZero() || expires.After(c.expires)) {
		c.expires = expires
	}
}

func (c *conn) protocolOf() hubproto.Protocol {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.protocol
}

// handshake parses the handshake from inbuf. It returns true once the
// connection is active and inbuf holds what followed the handshake.
func (c *conn) handshake() bool {
	req, rest, ok, err := hubproto.ParseHandshakeRequest(c.inbuf)
	if !ok && err == nil {
		if len(c.inbuf) > c.srv.opts.MaxMessageSize {
			c.failHandshake("Handshake was canceled.")
		}
		return false
	}
	if err != nil {
		// ASP.NET's text (the detail only with detailed errors, which
		// are off by default); the detail goes to the log.
		c.srv.log.Debug("bad handshake", "conn", c.id, "err", err)
		c.failHandshake("An unexpected error occurred during connection handshake.")
		return false
	}
	p := hubproto.Lookup(req.Protocol)
	switch {
	case p == nil:
		c.failHandshake(fmt.Sprintf("The protocol '%s' is not supported.", req.Protocol))
		return false
	case req.Version > 2:
		c.failHandshake(fmt.Sprintf("The server does not support version %d of the '%s' protocol.", req.Version, req.Protocol))
		return false
	case c.transportName() == transportSSE && p.TransferFormat() != hubproto.TransferFormatText:
		c.failHandshake(fmt.Sprintf("Cannot use the '%s' protocol on the current transport 'ServerSentEvents' due to the transport not supporting the '%s' transfer format.", req.Protocol, p.TransferFormat()))
		return false
	}
	c.inbuf = append([]byte(nil), rest...)
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.opts.ProposeTimeout)
	defer cancel()
	// Stateful reconnect is on only if negotiate agreed, the client shook
	// hands with version 2, and the transport is WebSockets.
	stateful := c.statefulOffered && req.Version >= 2 && c.transportName() == transportWebSockets
	open := Opening{Hub: c.hub, ConnID: c.id, UserID: c.user}
	if stateful {
		open.Stateful, open.Protocol, open.TokenHash = true, p.Name(), tokenHash(c.token)
	}
	entry, err := c.srv.cluster.OpenConnection(ctx, open)
	if err != nil {
		c.srv.log.Warn("record connection", "conn", c.id, "err", err)
		c.failHandshake("The server could not record the connection (no cluster leader?); try again.")
		return false
	}
	var mb *messageBuffer
	if stateful {
		c.out.setMax(max(c.srv.opts.OutboundQueue, statefulBufferCount+64)) // a resume replays a full buffer
		mb = newMessageBuffer()
	}
	if !c.opened(entry, p, mb) {
		// The connection ended while its open was being committed: end
		// did not record a close, so undo the open here.
		c.srv.goRecordClose(c, "ended during the handshake")
		return false
	}
	if err := c.joinAdmitted(ctx); err != nil {
		c.srv.log.Warn("join the groups the application admitted the connection to", "conn", c.id, "err", err)
		c.failHandshake("The server could not join the connection to its groups; try again.") // its end records the close
		return false
	}
	c.srv.activate(c)
	c.tellConnected()
	c.send(hubproto.EncodeHandshakeResponse(""))
	if c.mb != nil {
		c.startFeed()
	}
	c.srv.log.Debug("connection active", "conn", c.id, "hub", c.hub, "transport", c.transportName(), "protocol", p.Name())
	return true
}

func (c *conn) failHandshake(msg string) {
	c.send(hubproto.EncodeHandshakeResponse(msg))
	c.end("", false, "")
}

// handle acts on one hub message from the client.
func (c *conn) handle(m *hubproto.Message) {
	switch m.Type {
	case hubproto.Invocation, hubproto.StreamInvocation:
		switch {
		case c.forApplication(m):
			c.invokeApplication(m)
		case m.Type == hubproto.StreamInvocation:
			c.complete(m.InvocationID, nil, streamInvocationError(m.Target))
		default:
			c.invoke(m)
		}
	case hubproto.Ping:
		c.sawPing()
	case hubproto.Close:
		c.end("", false, "")
	case hubproto.Completion, hubproto.StreamItem, hubproto.CancelInvocation:
		if !c.receiveStreamMessage(m) && m.Type == hubproto.Completion {
			c.receiveCompletion(m) // a client result (clientresult.go)
		}
	default:
		// Ack and Sequence need no action without stateful reconnect.
	}
}

// recordClose removes the connection from the replicated state, unless
// another node has taken it over meanwhile (the close names this node).
func (s *Server) recordClose(c *conn, why string) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ProposeTimeout)
	defer cancel()
	err := s.cluster.CloseConnection(ctx, c.hub, c.id, why)
	if closeOutcomeTells(err) {
		c.tellDisconnected()
	}
	switch {
	case errors.Is(err, ErrRejected):
		// Another node holds it now, or it was closed meanwhile.
		s.log.Debug("connection close rejected", "conn", c.id, "err", err)
	case err != nil:
		s.log.Warn("record connection close", "conn", c.id, "err", err)
	}
}

// goRecordClose records a close in the background; Stop waits for it
// briefly.
func (s *Server) goRecordClose(c *conn, why string) {
	s.closing.Add(1)
	go func() {
		defer s.closing.Add(-1)
		s.recordClose(c, why)
	}()
}

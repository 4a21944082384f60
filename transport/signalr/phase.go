package signalr

import (
	"time"

	"github.com/backplane/backplane/internal/monotime"
	"github.com/backplane/backplane/transport/hubproto"
)

// A connection's life is a phase, and every change of phase happens in
// this file, under conn.mu:
//
//	negotiated ─attach─▶ handshaking ─opened─▶ active ◀─attachSocket─┐
//	                                             │                   │
//	                                             └─socketDropped─▶ detached
//	(any phase) ─enterClosing─▶ closing ─enterEnded─▶ ended
//
// Only a stateful connection is ever detached: its socket dropped and it
// waits for a resume. A connection taken over from another node (adopt)
// starts detached, until the resume that asked for it attaches its socket.
// The reaper asks each connection what is due (due) and carries it out.
type phase uint8

const (
	phaseNegotiated  phase = iota // negotiate answered; no transport request yet
	phaseHandshaking              // a transport is bound; the client's handshake is awaited
	phaseActive                   // the handshake is done and the open is recorded in the log
	phaseDetached                 // stateful: no socket; waiting for a resume
	phaseClosing                  // end ran; a stateful close may still be being recorded
	phaseEnded                    // done is closed
)

// life is a connection's phase and what the reaper judges it by.
// conn.mu guards it.
type life struct {
	phase phase
	// since is when the phase began: negotiated at creation, handshaking
	// when the transport was bound, detached when the socket dropped,
	// closing and ended when end ran.
	since     time.Time
	transport string // bound by the first transport request
	// openEntry is the Raft index of the entry that recorded the open (or
	// the takeover); 0 until then. From then on, ending the connection
	// records its close.
	openEntry uint64
	pingSeen  bool // the client has sent a Ping: the client timeout applies
	movedAway bool // another node took the connection over: it owns the record
}

// attach binds the connection to a transport on its first request:
// negotiated → handshaking.
func (c *conn) attach(transport string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.life.transport == "":
		c.life.transport = transport
		if c.life.phase == phaseNegotiated {
			c.life.phase, c.life.since = phaseHandshaking, time.Now()
		}
		return nil
	case c.life.transport != transport:
		return errChangeTransport
	case transport != transportLongPolling:
		return errConcurrent
	}
	return nil
}

// opened makes the connection active once its open is recorded at entry:
// handshaking → active, speaking p (and, for a stateful connection, with
// its message buffer). It reports false if the connection ended
// meanwhile: then nothing changes.
func (c *conn) opened(entry uint64, p hubproto.Protocol, mb *messageBuffer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.phase >= phaseClosing {
		return false
	}
	c.life.phase, c.life.since, c.life.openEntry = phaseActive, time.Now(), entry
	c.protocol, c.mb = p, mb
	return true
}

// adopting readies a connection taken over from another node before its
// takeover is committed: bound to WebSockets, speaking p, detached until
// the resume attaches its socket (and reaped like a dropped socket if that
// upgrade fails).
func (c *conn) adopting(p hubproto.Protocol, mb *messageBuffer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.life.transport = transportWebSockets
	c.life.phase, c.life.since = phaseDetached, time.Now()
	c.protocol, c.statefulOffered, c.mb = p, true, mb
}

// tookOver records that the takeover committed at entry.
func (c *conn) tookOver(entry uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.life.openEntry = entry
}

// attachSocket attaches a socket and returns the one it replaces, marked
// gone: detached → active.
func (c *conn) attachSocket(sock *socket) (old *socket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, c.sock = c.sock, sock
	if old != nil {
		old.gone.Store(true)
	}
	if c.life.phase == phaseDetached {
		c.life.phase, c.life.since = phaseActive, time.Now()
	}
	return old
}

// socketDropped detaches a stateful connection from its dropped socket
// (marked gone), unless a resume has replaced that socket already:
// active → detached. It reports whether sock was the attached socket.
func (c *conn) socketDropped(sock *socket) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock != sock {
		return false
	}
	sock.gone.Store(true)
	c.sock = nil
	if c.life.phase == phaseActive {
		c.life.phase, c.life.since = phaseDetached, time.Now()
	}
	return true
}

// ending is what end needs to know of a connection that starts closing.
type ending struct {
	recorded  bool // its open is recorded: its close must be too
	keepToken bool // long polling: the next poll learns how it ended
	stateful  bool
	movedAway bool
}

// enterClosing starts the end: any phase → closing. c.mu is held.
func (c *conn) enterClosing() ending {
	c.life.phase, c.life.since = phaseClosing, time.Now()
	return ending{
		recorded:  c.life.openEntry != 0,
		keepToken: c.life.transport == transportLongPolling,
		stateful:  c.mb != nil,
		movedAway: c.life.movedAway,
	}
}

// enterEnded finishes the end: closing → ended. since stays when end ran.
func (c *conn) enterEnded() {
	c.mu.Lock()
	c.life.phase = phaseEnded
	mb := c.mb
	c.mu.Unlock()
	close(c.done)
	if mb != nil {
		mb.stopFeed()
	}
}

// isEnding reports whether end has run (done may close a little later).
func (c *conn) isEnding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.phase >= phaseClosing
}

// moveAway marks a connection another node took over: ending it must not
// close it in the cluster.
func (c *conn) moveAway() {
	c.mu.Lock()
	c.life.movedAway = true
	c.mu.Unlock()
}

// sawPing notes the client's first Ping: from then on, its silence counts.
func (c *conn) sawPing() {
	c.mu.Lock()
	c.life.pingSeen = true
	c.mu.Unlock()
}

// transportName is the bound transport ("" while negotiated).
func (c *conn) transportName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.transport
}

// openEntryOf is the Raft index of the entry that recorded the open; 0
// until it is recorded.
func (c *conn) openEntryOf() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.openEntry
}

// duty is what the reaper is to do for a connection.
type duty uint8

const (
	dutyNone                duty = iota
	dutyForget                   // ended long ago: an ended long-polling connection whose client never polled again
	dutyCheckStore               // ask the store whether the cluster closed it or moved it elsewhere
	dutyEndNotResumed            // detached past DisconnectTimeout
	dutyEndTokenExpired          // its access token expired (CloseOnAuthenticationExpiration)
	dutyEndNeverConnected        // negotiated, no transport request within DisconnectTimeout
	dutyEndPollingStopped        // a long-polling client stopped polling
	dutyEndClientTimeout         // a client silent past ClientTimeout
	dutyEndHandshakeTimeout      // no handshake within HandshakeTimeout
	dutyPing                     // a WebSocket silent for KeepAlive: send a Ping
)

// due tells the reaper what is due for the connection at now, the most
// urgent first. checkStore says the store changed since the reaper's last
// sweep: a recorded connection then asks for a look at it (dutyCheckStore)
// before anything else but an ended or detached connection's timeout; the
// reaper asks again with checkStore false if the store still holds it.
func (c *conn) due(now time.Time, o *Options, checkStore bool) duty {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := &c.life
	switch l.phase {
	case phaseEnded:
		if now.Sub(l.since) > o.DisconnectTimeout {
			return dutyForget
		}
		return dutyNone
	case phaseClosing:
		return dutyNone
	case phaseDetached:
		if now.Sub(l.since) > o.DisconnectTimeout {
			return dutyEndNotResumed
		}
	}
	switch {
	case checkStore && l.openEntry != 0:
		return dutyCheckStore
	case o.CloseOnAuthenticationExpiration && !c.expires.IsZero() && now.After(c.expires):
		return dutyEndTokenExpired
	case l.phase == phaseNegotiated && now.Sub(l.since) > o.DisconnectTimeout:
		return dutyEndNeverConnected
	case l.transport == transportLongPolling && c.poll.stopped(now, o.DisconnectTimeout):
		return dutyEndPollingStopped
	case (l.phase == phaseHandshaking || l.phase == phaseActive) && l.transport != transportLongPolling && l.pingSeen &&
		monotime.Between(c.lastSeen.Load(), now) > o.ClientTimeout:
		// A detached stateful connection hears nothing from its client:
		// DisconnectTimeout alone decides.
		return dutyEndClientTimeout
	case l.phase == phaseHandshaking && now.Sub(l.since) > o.HandshakeTimeout:
		return dutyEndHandshakeTimeout
	case l.phase == phaseActive && l.transport == transportWebSockets && c.sock != nil &&
		monotime.Between(c.lastWrite.Load(), now) >= o.KeepAlive:
		return dutyPing
	}
	return dutyNone
}

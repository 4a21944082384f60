package signalr

import (
	"testing"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// TestConnectionPhasesSayWhatIsDue walks a connection through its phases
// and asks, at each, what the reaper has to do just before and just after
// the timeout that phase is judged by.
func TestConnectionPhasesSayWhatIsDue(t *testing.T) {
	t.Parallel()
	o := testOptions(nil)
	s := NewServer(newFakeCluster(t, "a").node("a"), o)
	o = s.opts
	dueAt := func(c *conn, after time.Duration, checkStore bool) duty {
		c.mu.Lock()
		since := c.life.since
		c.mu.Unlock()
		return c.due(since.Add(after), &o, checkStore)
	}
	want := func(what string, got, want duty) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: got duty %d, want %d", what, got, want)
		}
	}
	phaseOf := func(c *conn) phase {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.life.phase
	}

	c := s.newConn("chat", "c1", "tok~a", Identity{})
	want("negotiated, within DisconnectTimeout", dueAt(c, o.DisconnectTimeout/2, true), dutyNone)
	want("negotiated, past DisconnectTimeout", dueAt(c, o.DisconnectTimeout+time.Millisecond, false), dutyEndNeverConnected)

	if err := c.attach(transportWebSockets); err != nil || phaseOf(c) != phaseHandshaking {
		t.Fatalf("attach: got %v, phase %d, want handshaking", err, phaseOf(c))
	}
	if err := c.attach(transportSSE); err != errChangeTransport {
		t.Fatalf("attach of another transport: got %v, want %v", err, errChangeTransport)
	}
	want("handshaking, within HandshakeTimeout", dueAt(c, o.HandshakeTimeout/2, true), dutyNone)
	want("handshaking, past HandshakeTimeout", dueAt(c, o.HandshakeTimeout+time.Millisecond, false), dutyEndHandshakeTimeout)

	if !c.opened(7, hubproto.Lookup("json"), newMessageBuffer()) || phaseOf(c) != phaseActive || c.openEntryOf() != 7 {
		t.Fatalf("opened: got phase %d, entry %d, want active at 7", phaseOf(c), c.openEntryOf())
	}
	want("active, store changed", dueAt(c, 0, true), dutyCheckStore)
	want("active, store unchanged", dueAt(c, 0, false), dutyNone)
	c.sawPing()
	want("active after a Ping, silent past ClientTimeout", c.due(time.Now().Add(o.ClientTimeout+time.Second), &o, false), dutyEndClientTimeout)

	sock := &socket{c: c}
	if old := c.attachSocket(sock); old != nil {
		t.Fatalf("first socket: got an old socket %p, want none", old)
	}
	if !c.socketDropped(sock) || phaseOf(c) != phaseDetached || !sock.gone.Load() {
		t.Fatalf("socketDropped: got phase %d, gone %v, want detached and gone", phaseOf(c), sock.gone.Load())
	}
	if c.socketDropped(sock) {
		t.Fatal("socketDropped twice: got true, want false (it is no longer attached)")
	}
	want("detached, within DisconnectTimeout and silent", dueAt(c, o.DisconnectTimeout/2, false), dutyNone)
	want("detached, past DisconnectTimeout", dueAt(c, o.DisconnectTimeout+time.Millisecond, true), dutyEndNotResumed)
	resumed := &socket{c: c}
	c.attachSocket(resumed)
	if phaseOf(c) != phaseActive {
		t.Fatalf("resume: got phase %d, want active", phaseOf(c))
	}

	c.mu.Lock()
	e := c.enterClosing()
	c.mu.Unlock()
	if !e.recorded || !e.stateful || e.keepToken || e.movedAway {
		t.Fatalf("enterClosing: got %+v, want a recorded stateful connection", e)
	}
	if c.opened(8, hubproto.Lookup("json"), nil) || c.openEntryOf() != 7 {
		t.Fatal("opened after closing: got it reopened, want nothing changed")
	}
	want("closing", dueAt(c, time.Hour, true), dutyNone)
	c.enterEnded()
	if !c.isDone() || !c.isEnding() {
		t.Fatal("enterEnded: got the connection not done, want done")
	}
	want("ended, within DisconnectTimeout", dueAt(c, o.DisconnectTimeout/2, true), dutyNone)
	want("ended, past DisconnectTimeout", dueAt(c, o.DisconnectTimeout+time.Millisecond, true), dutyForget)

	expiring := s.newConn("chat", "c2", "tok2~a", Identity{Expires: time.Now().Add(time.Minute)})
	want("token not yet expired", expiring.due(time.Now(), &o, false), dutyNone)
	if d := expiring.due(time.Now().Add(2*time.Minute), &o, false); d == dutyEndTokenExpired {
		t.Fatal("token expired, CloseOnAuthenticationExpiration off (the default): got dutyEndTokenExpired, want the connection kept")
	}
	closing := o
	closing.CloseOnAuthenticationExpiration = true
	want("token expired, CloseOnAuthenticationExpiration on", expiring.due(time.Now().Add(2*time.Minute), &closing, false), dutyEndTokenExpired)

	adopted := s.newConn("chat", "c3", "tok3~a", Identity{})
	adopted.adopting(hubproto.Lookup("json"), newMessageBuffer())
	if phaseOf(adopted) != phaseDetached || adopted.transportName() != transportWebSockets {
		t.Fatalf("adopting: got phase %d on %q, want detached on WebSockets", phaseOf(adopted), adopted.transportName())
	}
	want("adopted before the takeover commits, store changed", dueAt(adopted, 0, true), dutyNone)
	adopted.tookOver(9)
	want("adopted after the takeover, store changed", dueAt(adopted, 0, true), dutyCheckStore)
}

package signalr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/monotime"
	"github.com/backplane/backplane/transport/netconn"
)

// Stateful reconnect (Ack 8, Sequence 9) spoken by hand: what a JS client
// built withStatefulReconnect() does on WebSockets.

// handshakeV2 is the handshake of a client that negotiated stateful
// reconnect.
const handshakeV2 = `{"protocol":"json","version":2}` + rs

const (
	typeAck      = 8
	typeSequence = 9
)

// sclient is a hand-driven stateful client: it keeps the server's Acks
// apart from the other records.
type sclient struct {
	*wsClient
	acks []int64 // server Acks not yet awaited, in arrival order
	all  []int64 // every server Ack received
}

// openStateful negotiates with useStatefulReconnect=true, upgrades, shakes
// hands with version 2 and pings, as the JS client does.
func (ts *testServer) openStateful(hub string) *sclient {
	ts.t.Helper()
	n := ts.negotiate(hub, "useStatefulReconnect=true")
	if got := string(n.raw["useStatefulReconnect"]); got != "true" {
		ts.t.Fatalf("negotiate with useStatefulReconnect=true: got useStatefulReconnect %q, want true", got)
	}
	c, resp, err := ts.dialWS(hub, "id="+url.QueryEscape(n.ConnectionToken), nil)
	if err != nil {
		ts.t.Fatalf("upgrade %s: got error %v (status %v), want a WebSocket", hub, err, statusOf(resp))
	}
	c.id, c.token = n.ConnectionID, n.ConnectionToken
	c.write(handshakeV2)
	if f := c.frame(); string(f.data) != "{}"+rs {
		ts.t.Fatalf("%s v2 handshake: got %q, want %q", c.name, f.data, "{}"+rs)
	}
	c.write(`{"type":6}` + rs)
	if held := ts.srv.lookup(c.token); held == nil || held.mb == nil {
		ts.t.Fatalf("connection %s: got it held without stateful reconnect, want it stateful", c.id)
	}
	return &sclient{wsClient: c}
}

// resume opens a new socket for an existing connection's token, as the JS
// client does after a drop: no negotiate, no handshake.
func (ts *testServer) resume(hub string, old *sclient) *sclient {
	ts.t.Helper()
	c, resp, err := ts.dialWS(hub, "id="+url.QueryEscape(old.token), nil)
	if err != nil {
		ts.t.Fatalf("resume %s: got error %v (status %v), want a WebSocket", old.id, err, statusOf(resp))
	}
	c.id, c.token = old.id, old.token
	return &sclient{wsClient: c}
}

// resumeStatus is the status of a resume attempt that must fail.
func (ts *testServer) resumeStatus(hub, token string) int {
	ts.t.Helper()
	c, resp, err := ts.dialWS(hub, "id="+url.QueryEscape(token), nil)
	if err == nil {
		_ = c.conn.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		ts.t.Fatalf("resume %s: got error %v and no response, want a status", token, err)
	}
	return resp.StatusCode
}

// drop cuts the TCP connection without a Close frame (a 1006 for the
// server).
func (c *wsClient) drop() { _ = c.conn.UnderlyingConn().Close() }

// seqID is the sequenceId of an Ack or a Sequence.
func seqID(t *testing.T, r record) int64 {
	t.Helper()
	var v struct {
		SequenceID *int64 `json:"sequenceId"`
	}
	if err := json.Unmarshal([]byte(r.raw), &v); err != nil || v.SequenceID == nil {
		t.Fatalf("record %s: got no sequenceId (%v), want one", r.raw, err)
	}
	return *v.SequenceID
}

// nextMsg returns the next record that is neither a Ping nor an Ack; it
// keeps the Acks it passes.
func (c *sclient) nextMsg() record {
	c.t.Helper()
	for {
		r := c.next()
		if r.Type != typeAck {
			return r
		}
		id := seqID(c.t, r)
		c.acks, c.all = append(c.acks, id), append(c.all, id)
	}
}

// awaitAck waits for the server's Ack of n client messages; other records
// stay queued. The server never acks more than it received.
func (c *sclient) awaitAck(n int64) {
	c.t.Helper()
	var kept []record
	defer func() { c.queue = append(kept, c.queue...) }()
	for {
		for len(c.acks) > 0 {
			got := c.acks[0]
			c.acks = c.acks[1:]
			if got > n {
				c.t.Fatalf("%s: got Ack %d, want at most %d", c.name, got, n)
			}
			if got == n {
				return
			}
		}
		r := c.next()
		if r.Type != typeAck {
			kept = append(kept, r)
			continue
		}
		id := seqID(c.t, r)
		c.acks, c.all = append(c.acks, id), append(c.all, id)
	}
}

// wantSequence wants the first record of a resumed socket to be our
// Sequence and returns its id.
func (c *sclient) wantSequence() int64 {
	c.t.Helper()
	r := c.nextAny()
	if r.Type != typeSequence {
		c.t.Fatalf("%s: got first record %s, want a Sequence", c.name, r.raw)
	}
	return seqID(c.t, r)
}

func ack(n int) string      { return `{"type":8,"sequenceId":` + strconv.Itoa(n) + `}` + rs }
func sequence(n int) string { return `{"type":9,"sequenceId":` + strconv.Itoa(n) + `}` + rs }

// held returns the server's connection of a token.
func (ts *testServer) held(token string) *conn {
	ts.t.Helper()
	c := ts.srv.lookup(token)
	if c == nil {
		ts.t.Fatalf("connection of token %s: got none held, want one", token)
	}
	return c
}

// waitDetached waits until the server noticed the drop of the socket.
func (ts *testServer) waitDetached(token string) {
	ts.t.Helper()
	c := ts.held(token)
	waitFor(ts.t, "the server to notice the dropped socket", func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sock == nil && c.life.phase == phaseDetached, "socket still attached"
	})
}

// buffered reports the server's unacknowledged buffer of a connection.
func buffered(c *conn) (n, bytes int, outSeq uint64) {
	c.mb.mu.Lock()
	defer c.mb.mu.Unlock()
	return len(c.mb.unacked), c.mb.unackedBytes, c.mb.outSeq
}

// statefulRecord reads a connection's replicated stateful record.
func (fc *fakeCluster) statefulRecord(t *testing.T, token string) (fsm.StatefulConnection, bool) {
	t.Helper()
	s, ok, err := fc.f.StatefulByToken(tokenHash(token))
	if err != nil {
		t.Fatalf("StatefulByToken: got error %v, want nil", err)
	}
	return s, ok
}

// targets counts the committed messages of a hub by target.
func (fc *fakeCluster) targets(t *testing.T, hub string) map[string]int {
	t.Helper()
	page, err := fc.ReadAll(0, 100_000)
	if err != nil {
		t.Fatalf("ReadAll: got error %v, want nil", err)
	}
	out := map[string]int{}
	for _, m := range page.Messages {
		if m.Hub == hub {
			out[m.Target]++
		}
	}
	return out
}

// resumeReplacing resumes c on the hub chat while its socket is still
// open: the old socket must close with nothing more, and the new one
// start at Sequence 1 with first replayed. oldSocket names the old socket
// in a failure.
func (ts *testServer) resumeReplacing(c *sclient, first record, oldSocket string) *sclient {
	ts.t.Helper()
	r := ts.resume("chat", c)
	if got := c.closed(); len(got) != 0 {
		ts.t.Fatalf("%s: got %v before it closed, want it closed with nothing more", oldSocket, got)
	}
	mustEqual(ts.t, "Sequence on the new socket", r.wantSequence(), int64(1))
	if got := r.nextMsg(); got.raw != first.raw {
		ts.t.Fatalf("replay: got %s, want %s", got.raw, first.raw)
	}
	return r
}

// wantNextDelivery publishes "after" on the hub chat to audience (names)
// through fc and wants it as c's next message: the connection is open and
// delivering. what names the connection in a failure.
func (c *sclient) wantNextDelivery(fc *fakeCluster, audience fsm.Audience, names []string, what string) {
	c.t.Helper()
	fc.publishTo(c.t, "chat", audience, names, "after")
	if got := c.nextMsg(); got.Target != "after" {
		c.t.Fatalf("%s: got %s, want the next delivery", what, got.raw)
	}
}

// publishTo commits a message for a hub audience and returns its index.
func (fc *fakeCluster) publishTo(t *testing.T, hub string, audience fsm.Audience, names []string, target string, args ...any) uint64 {
	t.Helper()
	if args == nil {
		args = []any{}
	}
	b, _ := json.Marshal(args)
	return fc.publish(t, &fsm.Publish{Hub: hub, Audience: audience, Names: names, Target: target, Arguments: b})
}

// statefulOptions are testOptions with a client timeout long enough for
// clients that wait out the server's once-a-second Acks in silence.
func statefulOptions(edit func(*Options)) Options {
	return testOptions(func(o *Options) {
		o.ClientTimeout = 30 * time.Second
		if edit != nil {
			edit(o)
		}
	})
}

func TestStatefulOnlyWhenNegotiatedOnWebSocketsWithVersion2(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))

	// Offered only when asked.
	for query, want := range map[string]string{"negotiateVersion=1": "", "negotiateVersion=1&useStatefulReconnect=true": "true"} {
		_, body := ts.negotiateRaw("chat", query)
		if got := string(decodeNegotiation(t, body).raw["useStatefulReconnect"]); got != want {
			t.Fatalf("negotiate ?%s: got useStatefulReconnect %q, want %q", query, got, want)
		}
	}

	// A WebSocket that is not stateful: the flag with a version 1
	// handshake, or a version 2 handshake without the flag. A drop ends it.
	for _, tc := range []struct {
		name, negotiate, handshake string
	}{
		{"asked, version 1", "useStatefulReconnect=true", handshakeJSON},
		{"not asked, version 2", "", handshakeV2},
	} {
		n := ts.negotiate("chat", tc.negotiate)
		c, resp, err := ts.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
		if err != nil {
			t.Fatalf("%s: upgrade: got error %v (status %v), want a WebSocket", tc.name, err, statusOf(resp))
		}
		c.token = n.ConnectionToken
		c.write(tc.handshake)
		mustEqual(t, tc.name+": handshake reply", string(c.frame().data), "{}"+rs)
		if held := ts.held(n.ConnectionToken); held.mb != nil {
			t.Fatalf("%s: got a stateful connection, want a plain one", tc.name)
		}
		if _, ok := ts.cluster.statefulRecord(t, n.ConnectionToken); ok {
			t.Fatalf("%s: got a stateful record in the cluster, want none", tc.name)
		}
		c.drop()
		waitFor(t, tc.name+": the dropped connection to end", func() (bool, string) {
			return ts.srv.lookup(n.ConnectionToken) == nil, "still held"
		})
		mustEqual(t, tc.name+": resume after a drop", ts.resumeStatus("chat", n.ConnectionToken), http.StatusNotFound)
		waitFor(t, tc.name+": the close to be recorded", func() (bool, string) {
			return !ts.cluster.recorded(t, n.ConnectionID), "still recorded"
		})
	}

	// SSE and long polling never use it, even when asked with version 2.
	n := ts.negotiate("chat", "useStatefulReconnect=true")
	sse := ts.openSSE("chat", n.ConnectionToken)
	ts.post("chat", n.ConnectionToken, handshakeV2)
	mustEqual(t, "SSE handshake reply", sse.event().data, "{}"+rs)
	if ts.held(n.ConnectionToken).mb != nil {
		t.Fatal("SSE with a version 2 handshake: got a stateful connection, want a plain one")
	}
	if _, ok := ts.cluster.statefulRecord(t, n.ConnectionToken); ok {
		t.Fatal("SSE: got a stateful record in the cluster, want none")
	}

	n = ts.negotiate("chat", "useStatefulReconnect=true")
	if r := ts.poll("chat", n.ConnectionToken); r.status != http.StatusOK {
		t.Fatalf("first poll: got %d %q, want 200", r.status, r.body)
	}
	ts.post("chat", n.ConnectionToken, handshakeV2)
	if r := ts.poll("chat", n.ConnectionToken); r.body != "{}"+rs {
		t.Fatalf("poll after the handshake: got %d %q, want %q", r.status, r.body, "{}"+rs)
	}
	if ts.held(n.ConnectionToken).mb != nil {
		t.Fatal("long polling with a version 2 handshake: got a stateful connection, want a plain one")
	}
	if _, ok := ts.cluster.statefulRecord(t, n.ConnectionToken); ok {
		t.Fatal("long polling: got a stateful record in the cluster, want none")
	}
}

// TestStatefulNumberingAndAcks: deliveries and completions are numbered;
// the server acks the client's trackable messages about once a second; a
// client Ack trims the server's buffer, which a resume shows.
func TestStatefulNumberingAndAcks(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	c := ts.openStateful("chat")

	// Client message 1: an invocation (its Completion and the broadcast
	// are our events 1 and 2). Client message 2: a Completion, which is
	// trackable too. Pings and Acks are not counted.
	c.write(invocation("0", "SendToAll", "a", 1))
	c.write(`{"type":3,"invocationId":"x","result":1}` + rs + `{"type":6}` + rs + ack(0))
	start := time.Now()
	r1, r2 := c.nextMsg(), c.nextMsg()
	if r1.Type != 3 || r1.InvocationID != "0" || r1.Error != "" || r2.Type != 1 || r2.Target != "a" {
		t.Fatalf("events 1 and 2: got %s, %s, want the Completion of 0 then the broadcast a", r1.raw, r2.raw)
	}
	c.awaitAck(2)
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("server Ack: got it after %s, want it within about a second", waited)
	}
	// One more (fire-and-forget: no Completion, only the broadcast).
	c.write(`{"type":6}` + rs + invocation("", "SendToAll", "b", 2))
	r3 := c.nextMsg()
	if r3.Type != 1 || r3.Target != "b" {
		t.Fatalf("event 3: got %s, want the broadcast b", r3.raw)
	}
	c.awaitAck(3)
	if len(c.all) != 2 || c.all[0] != 2 || c.all[1] != 3 {
		t.Fatalf("server Acks: got %v, want [2 3]: one per growth of the count", c.all)
	}

	// The client acknowledges event 1 only: 2 and 3 stay buffered.
	c.write(ack(1))
	held := ts.held(c.token)
	waitFor(t, "the client's Ack to trim the buffer", func() (bool, string) {
		n, _, outSeq := buffered(held)
		return n == 2 && outSeq == 3, "buffer of " + strconv.Itoa(n) + " up to " + strconv.FormatUint(outSeq, 10)
	})
	c.drop()
	ts.waitDetached(c.token)
	r := ts.resume("chat", c)
	mustEqual(t, "Sequence after acking 1", r.wantSequence(), int64(2))
	if got := r.nextMsg(); got.raw != r2.raw {
		t.Fatalf("replayed event 2: got %s, want %s", got.raw, r2.raw)
	}
	if got := r.nextMsg(); got.raw != r3.raw {
		t.Fatalf("replayed event 3: got %s, want %s", got.raw, r3.raw)
	}
	// An Ack beyond everything sent trims it all; a resume then starts
	// after the last event.
	r.write(sequence(3) + ack(3))
	waitFor(t, "the buffer to empty", func() (bool, string) {
		n, _, _ := buffered(held)
		return n == 0, strconv.Itoa(n) + " buffered"
	})
	r.drop()
	ts.waitDetached(c.token)
	r = ts.resume("chat", c)
	mustEqual(t, "Sequence with nothing buffered", r.wantSequence(), int64(4))
}

// TestStatefulResumeSameNode: a dropped socket resumes with everything
// unacknowledged, including what was published while detached; client
// input before its Sequence is ignored; resent invocations already
// applied are not committed again.
func TestStatefulResumeSameNode(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	c := ts.openStateful("chat")

	if r := c.invoke("0", "JoinGroup", "g"); r.Error != "" { // client 1; event 1
		t.Fatalf("JoinGroup: got %s, want success", r.raw)
	}
	c.write(invocation("1", "SendToGroup", "g", "m1", 1)) // client 2; events 2 (Completion), 3 (m1)
	e2, e3 := c.nextMsg(), c.nextMsg()
	if e2.Type != 3 || e2.InvocationID != "1" || e3.Target != "m1" {
		t.Fatalf("events 2 and 3: got %s, %s, want the Completion of 1 then m1", e2.raw, e3.raw)
	}
	c.write(ack(1))
	c.awaitAck(2)
	held := ts.held(c.token)
	waitFor(t, "the client's Ack to trim the buffer", func() (bool, string) {
		n, _, _ := buffered(held)
		return n == 2, strconv.Itoa(n) + " buffered"
	})

	c.drop()
	ts.waitDetached(c.token)
	ts.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "d1") // event 4
	ts.cluster.publishTo(t, "chat", fsm.ToAll, nil, "d2")              // event 5
	r := ts.resume("chat", c)
	mustEqual(t, "Sequence: the first unacknowledged event", r.wantSequence(), int64(2))
	var replay []string
	for range 4 {
		replay = append(replay, r.nextMsg().raw)
	}
	want := []string{e2.raw, e3.raw, `{"type":1,"target":"d1","arguments":[]}`, `{"type":1,"target":"d2","arguments":[]}`}
	for i := range want {
		if replay[i] != want[i] {
			t.Fatalf("replay: got %q, want %q", replay, want)
		}
	}

	// Before the client's Sequence its input is ignored.
	before := ts.cluster.LastMessage()
	r.write(invocation("9", "SendToAll", "early"))
	// The client did not see our Ack of its message 2: it resends it (a
	// duplicate) and a new one.
	r.write(sequence(2) + invocation("1", "SendToGroup", "g", "m1", 1) + invocation("2", "SendToGroup", "g", "m2", 2))
	if got := r.nextMsg(); got.Type != 3 || got.InvocationID != "2" || got.Error != "" {
		t.Fatalf("after the resend: got %s, want the Completion of 2 only", got.raw)
	}
	if got := r.nextMsg(); got.Target != "m2" {
		t.Fatalf("after the resend: got %s, want m2", got.raw)
	}
	r.awaitAck(3)
	ts.cluster.publishTo(t, "chat", fsm.ToAll, nil, "marker")
	if got := r.nextMsg(); got.Target != "marker" {
		t.Fatalf("after m2: got %s, want only the marker (no second Completion of 1, nothing for early)", got.raw)
	}
	mustEqual(t, "messages committed by the resumed client", ts.cluster.LastMessage(), before+2) // m2 and the marker
	counts := ts.cluster.targets(t, "chat")
	if counts["m1"] != 1 || counts["m2"] != 1 || counts["early"] != 0 {
		t.Fatalf("committed messages: got %v, want m1 and m2 once, early never", counts)
	}
	s, ok := ts.cluster.statefulRecord(t, c.token)
	if !ok || s.ClientSeq != 3 || s.NodeID != "a" {
		t.Fatalf("replicated state: got %+v (found %v), want client sequence 3 on node a", s, ok)
	}
}

// TestStatefulDetachedOutlivesClientTimeout: a detached connection hears
// nothing from its client, by definition; it waits for a resume until
// DisconnectTimeout even when the client timeout is shorter.
func TestStatefulDetachedOutlivesClientTimeout(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(func(o *Options) {
		o.ClientTimeout, o.DisconnectTimeout = 300*time.Millisecond, 3*time.Second
	}))
	c := ts.openStateful("chat") // it pinged: the client timeout applies
	held := ts.held(c.token)
	c.drop()
	ts.waitDetached(c.token)
	waitFor(t, "the client to be silent past the client timeout", func() (bool, string) {
		return monotime.Since(held.lastSeen.Load()) > 300*time.Millisecond, "not yet"
	})
	ts.srv.reap(time.Now())
	if held.isEnding() {
		t.Fatal("detached past the client timeout: got the connection ended, want it waiting for a resume until DisconnectTimeout")
	}
	r := ts.resume("chat", c)
	mustEqual(t, "Sequence", r.wantSequence(), int64(1))
	// Resumed, the client timeout counts from the resume, not from the
	// client's last message before the drop.
	ts.srv.reap(time.Now())
	if held.isEnding() {
		t.Fatal("just resumed: got the connection ended by the client timeout, want it open")
	}
	r.write(sequence(1))
	r.wantNextDelivery(ts.cluster, fsm.ToAll, nil, "resumed socket")
}

// TestStatefulResumeReplacesOpenSocket: a resume while the old socket is
// still open (half-open TCP) replaces it instead of answering 409.
func TestStatefulResumeReplacesOpenSocket(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	c := ts.openStateful("chat")
	first := c.invoke("0", "JoinGroup", "g")
	r := ts.resumeReplacing(c, first, "old socket")
	r.write(sequence(2))
	r.wantNextDelivery(ts.cluster, fsm.ToAll, nil, "new socket")
}

// TestStatefulGracefulCloseEndsConnection: a Close frame or a Close
// message turns resume off; so does DisconnectTimeout without a resume.
func TestStatefulGracefulCloseEndsConnection(t *testing.T) {
	t.Parallel()
	const disconnectTimeout = 500 * time.Millisecond
	ts := newTestServer(t, statefulOptions(func(o *Options) { o.DisconnectTimeout = disconnectTimeout }))
	ended := func(name string, c *sclient) {
		t.Helper()
		waitFor(t, name+": the connection to end", func() (bool, string) {
			return ts.srv.lookup(c.token) == nil, "still held"
		})
		mustEqual(t, name+": resume", ts.resumeStatus("chat", c.token), http.StatusNotFound)
		if ts.cluster.recorded(t, c.id) {
			t.Fatalf("%s: got the connection still recorded, want it closed", name)
		}
		if _, ok := ts.cluster.statefulRecord(t, c.token); ok {
			t.Fatalf("%s: got its stateful record kept, want it forgotten", name)
		}
	}

	frame := ts.openStateful("chat")
	// The JS client's close() sends no code (1005).
	if err := frame.conn.WriteControl(websocket.CloseMessage, []byte{}, time.Now().Add(time.Second)); err != nil {
		t.Fatalf("Close frame: %v", err)
	}
	frame.closed()
	ended("Close frame", frame)

	normal := ts.openStateful("chat")
	if err := normal.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)); err != nil {
		t.Fatalf("Close frame 1000: %v", err)
	}
	normal.closed()
	ended("Close frame 1000", normal)

	msg := ts.openStateful("chat")
	msg.write(`{"type":7}` + rs)
	if got := msg.closed(); len(got) != 0 {
		t.Fatalf("after the client's Close: got %v, want nothing more", got)
	}
	ended("Close message", msg)

	// Closed through the cluster (the REST API): the client hears of it
	// only once the close is committed, so its immediate resume is refused.
	rest := ts.openStateful("chat")
	cmd := fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: "chat", ConnID: rest.id, Reason: "rest"})
	if _, err := ts.cluster.Propose(context.Background(), []fsm.Command{cmd}); err != nil {
		t.Fatalf("commit the close: %v", err)
	}
	wantClose(t, "closed through the cluster", rest.closed(), false, false)
	mustEqual(t, "closed through the cluster: immediate resume", ts.resumeStatus("chat", rest.token), http.StatusNotFound)
	ended("closed through the cluster", rest)

	gone := ts.openStateful("chat")
	gone.drop()
	ts.waitDetached(gone.token)
	start := time.Now()
	ended("not resumed", gone)
	if waited := time.Since(start); waited < disconnectTimeout/2 {
		t.Fatalf("not resumed: got it ended after %s, want DisconnectTimeout (%s) first", waited, disconnectTimeout)
	}
}

// A stateful connection whose socket has parked its reader loses it and
// gets it back as with a reader waiting: a resume over the parked socket
// replaces it, a parked socket whose client vanished detaches, and the
// resume replays what was not acknowledged.
func TestStatefulParkedSocketsDetachAndResume(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	ts := newTestServer(t, statefulOptions(func(o *Options) { o.ParkIdleReaders = 20 * time.Millisecond }))
	parked := func(what string) {
		t.Helper()
		waitFor(t, what, func() (bool, string) {
			readers, _, _ := socketGoroutines()
			return readers == 0, fmt.Sprintf("%d readers", readers)
		})
	}
	c := ts.openStateful("chat")
	first := c.invoke("0", "JoinGroup", "g")
	parked("the first socket to park its reader")

	r := ts.resumeReplacing(c, first, "replaced parked socket") // over the parked socket
	r.write(sequence(2))
	parked("the second socket to park its reader")

	r.drop() // the client vanishes while its socket is parked
	ts.waitDetached(r.token)
	ts.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "while-away")
	again := ts.resume("chat", r)
	mustEqual(t, "Sequence after the drop", again.wantSequence(), int64(1))
	if got := again.nextMsg(); got.raw != first.raw {
		t.Fatalf("replay after the drop: got %s, want %s", got.raw, first.raw)
	}
	if got := again.nextMsg(); got.Target != "while-away" {
		t.Fatalf("replay after the drop: got %s, want while-away", got.raw)
	}
}

// An idle stateful connection holds no goroutine for its feed either: the
// store starts one at its hub's next message or its own next change. Its
// messages and the completions of its invocations (both read from the
// log) still arrive, numbered, and its Acks are taken.
func TestIdleStatefulConnectionsHoldNoGoroutine(t *testing.T) {
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	ts := newTestServer(t, statefulOptions(func(o *Options) { o.ParkIdleReaders = 20 * time.Millisecond }))
	const n = 10
	clients := make([]*sclient, n)
	for i := range clients {
		clients[i] = ts.openStateful("chat")
	}
	idle := func(what string) {
		t.Helper()
		waitFor(t, what, func() (bool, string) {
			readers, _, writers := socketGoroutines()
			feeds := feedGoroutines()
			return readers == 0 && writers == 0 && feeds == 0, fmt.Sprintf("%d readers, %d writers, %d feeds", readers, writers, feeds)
		})
	}
	idle("every stateful connection to wait without a goroutine")

	for round := 1; round <= 2; round++ {
		target := fmt.Sprint("broadcast", round)
		ts.cluster.publishTo(t, "chat", fsm.ToAll, nil, target)
		for i, c := range clients {
			if got := c.nextMsg(); got.Target != target {
				t.Fatalf("client %d, round %d: got %s, want %s", i, round, got.raw, target)
			}
			c.write(ack(2 * round))
		}
		for i, c := range clients {
			if r := c.invoke(fmt.Sprint("j", round), "JoinGroup", "g"); r.Error != "" {
				t.Fatalf("client %d, round %d: JoinGroup: %s", i, round, r.raw)
			}
		}
		idle(fmt.Sprintf("every stateful connection to wait again after round %d", round))
	}
	ts.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "to-group")
	for i, c := range clients {
		if got := c.nextMsg(); got.Target != "to-group" {
			t.Fatalf("client %d: got %s, want to-group", i, got.raw)
		}
	}
}

// feedGoroutines counts the goroutines reading stateful connections'
// streams.
func feedGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "signalr.(*conn).fill") || strings.Contains(g, "signalr.(*conn).feed") {
			n++
		}
	}
	return n
}

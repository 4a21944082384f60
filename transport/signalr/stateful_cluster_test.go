package signalr

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// Stateful reconnect across nodes, back-pressure and checkpoints.

// startPeer serves a Server for node id over base's replicated state: it
// shares the fake cluster's FSM, Raft index, hook and member URLs under its
// own node id, as the nodes of one Raft group do.
func startPeer(t *testing.T, base *fakeCluster, id string, opts Options) *testServer {
	t.Helper()
	return serveNode(t, base, id, opts, nil)
}

// startPair serves node a (startServer) and node b (startPeer) over one
// fake cluster, both with opts. The caller says where the cluster lists a
// (base.setNodeURL): at a.url, or at closedURL, so that b takes over.
func startPair(t *testing.T, opts Options) (base *fakeCluster, a, b *testServer) {
	t.Helper()
	base = newFakeCluster(t, "a")
	a = startServer(t, base, opts, nil)
	b = startPeer(t, base, "b", opts)
	return base, a, b
}

// closedURL is the address of a port nobody listens on: forwarding there
// fails with a dial error, as it does to a dead node.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

// holder names the node the replicated state records for a connection.
func (fc *fakeCluster) holder(t *testing.T, hub, connID string) (string, bool) {
	t.Helper()
	info, ok, err := fc.f.Connection(hub, connID)
	if err != nil {
		t.Fatalf("Connection(%q): got error %v, want nil", connID, err)
	}
	return info.NodeID, ok
}

// TestStatefulTakeoverOnAnotherNode: the holder's address is dead, so the
// node that gets the resume takes the connection over, replays from the
// last replicated checkpoint and dedupes the client's resends against the
// replicated client sequence; the old holder lets go without closing it.
func TestStatefulTakeoverOnAnotherNode(t *testing.T) {
	t.Parallel()
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", closedURL(t))

	c := a.openStateful("chat")
	old := a.held(c.token)
	if r := c.invoke("0", "JoinGroup", "g"); r.Error != "" { // client 1; event 1
		t.Fatalf("JoinGroup: got %s, want success", r.raw)
	}
	c.write(invocation("1", "SendToGroup", "g", "c1")) // client 2; events 2 and 3
	var had []string                                   // the client's events 2..5
	for range 2 {
		had = append(had, c.nextMsg().raw)
	}
	a.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "p1")
	a.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "p2")
	for range 2 {
		had = append(had, c.nextMsg().raw)
	}
	if !strings.HasPrefix(had[0], `{"type":3,"invocationId":"1",`) || had[3] != `{"type":1,"target":"p2","arguments":[]}` {
		t.Fatalf("events 2..5: got %q, want the Completion of 1, c1, p1, p2", had)
	}
	c.write(ack(3))
	waitFor(t, "the checkpoint of the client's Ack", func() (bool, string) {
		s, ok := a.cluster.statefulRecord(t, c.token)
		return ok && s.AckSeq == 3, "ack " + strconv.FormatUint(s.AckSeq, 10)
	})

	c.drop()
	a.waitDetached(c.token)
	a.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "p3") // event 6, while detached

	r := b.resume("chat", c)
	mustEqual(t, "Sequence from the new node: the checkpoint + 1", r.wantSequence(), int64(4))
	if node, open := a.cluster.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder after the takeover: got %q (open %v), want b", node, open)
	}

	// The replay renumbers from the checkpoint exactly as a did: the
	// client drops 4 and 5, which it had, and keeps 6.
	highest, seq := int64(5), int64(4)
	var fresh []string
	for range 3 {
		got := r.nextMsg()
		if seq <= highest {
			if got.raw != had[seq-2] {
				t.Fatalf("replayed event %d: got %s, want %s as a numbered it", seq, got.raw, had[seq-2])
			}
		} else {
			fresh = append(fresh, got.Target)
		}
		seq++
	}
	if len(fresh) != 1 || fresh[0] != "p3" {
		t.Fatalf("new events after the replay: got %v, want [p3]", fresh)
	}

	// The client pretends it missed a's Ack of its message 2: it resends
	// it, which was applied, and sends a new one.
	r.write(sequence(2) + invocation("1", "SendToGroup", "g", "c1") + invocation("2", "SendToGroup", "g", "c2"))
	if got := r.nextMsg(); got.Type != 3 || got.InvocationID != "2" || got.Error != "" {
		t.Fatalf("after the resend: got %s, want the Completion of 2 only", got.raw)
	}
	if got := r.nextMsg(); got.Target != "c2" {
		t.Fatalf("after the resend: got %s, want c2", got.raw)
	}
	r.awaitAck(3)
	counts := a.cluster.targets(t, "chat")
	if counts["c1"] != 1 || counts["c2"] != 1 {
		t.Fatalf("committed messages: got %v, want c1 and c2 once each", counts)
	}

	// The old holder lets go once it sees the takeover; the connection
	// stays open on b.
	waitFor(t, "the old holder to let go", func() (bool, string) {
		return a.srv.lookup(c.token) == nil, "still held by a"
	})
	old.mu.Lock()
	movedAway := old.life.movedAway
	old.mu.Unlock()
	if !movedAway {
		t.Fatal("old holder: got the connection ended for another reason, want it let go for the takeover")
	}
	if node, open := a.cluster.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder after a let go: got %q (open %v), want b, open", node, open)
	}
	r.wantNextDelivery(a.cluster, fsm.ToGroups, []string{"g"}, "on b")
	if held := b.held(c.token); held.isEnding() {
		t.Fatal("on b: got the connection ending, want it open")
	}
}

// TestStatefulOldHolderTimesOutAfterTakeover: the old holder's
// DisconnectTimeout can fire after the takeover but before it notices it;
// its close must not close the connection its new holder serves.
func TestStatefulOldHolderTimesOutAfterTakeover(t *testing.T) {
	t.Parallel()
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", closedURL(t))
	c := a.openStateful("chat")
	c.drop()
	a.waitDetached(c.token)
	r := b.resume("chat", c)
	mustEqual(t, "Sequence from b", r.wantSequence(), int64(1))
	a.srv.reap(time.Now().Add(time.Hour)) // a's tick, past its DisconnectTimeout
	waitFor(t, "the old holder to let go", func() (bool, string) {
		return a.srv.lookup(c.token) == nil, "still held by a"
	})
	r.wantNextDelivery(a.cluster, fsm.ToAll, nil, "on b (the connection open)")
	if node, open := a.cluster.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder: got %q (open %v), want b, open", node, open)
	}
}

// TestStatefulAdoptedWithoutSocketIsReaped: a takeover whose upgrade then
// fails leaves a connection with no socket; it is ended after
// DisconnectTimeout like any detached one, not kept forever.
func TestStatefulAdoptedWithoutSocketIsReaped(t *testing.T) {
	t.Parallel()
	opts := statefulOptions(func(o *Options) { o.DisconnectTimeout = 300 * time.Millisecond })
	base, a, b := startPair(t, opts)
	base.setNodeURL("a", closedURL(t))
	c := a.openStateful("chat")
	c.drop()
	a.waitDetached(c.token)
	// An upgrade request without its Sec-WebSocket-Key.
	hdr := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"}}
	if status := b.status(http.MethodGet, b.hubURL("chat", "id="+url.QueryEscape(c.token)), nil, hdr); status != http.StatusBadRequest {
		t.Fatalf("malformed upgrade through b: got %d, want 400", status)
	}
	waitFor(t, "b to end the connection that never got its socket", func() (bool, string) {
		return b.srv.lookup(c.token) == nil, "still held by b"
	})
	if _, open := a.cluster.holder(t, "chat", c.id); open {
		t.Fatal("after b ended it: got the connection open in the cluster, want it closed")
	}
}

// TestStatefulResumeViaAnotherNodeWhileHolderLives: with the holder
// reachable, a resume that reaches another node is forwarded; a closed
// connection is refused everywhere; a plain connection is forwarded, never
// adopted.
func TestStatefulResumeViaAnotherNodeWhileHolderLives(t *testing.T) {
	t.Parallel()
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", a.url)

	// A stateful resume through b reaches a, which keeps the connection.
	c := a.openStateful("chat")
	first := c.invoke("0", "JoinGroup", "g")
	c.drop()
	a.waitDetached(c.token)
	r := b.resume("chat", c)
	mustEqual(t, "Sequence through b", r.wantSequence(), int64(1))
	if got := r.nextMsg(); got.raw != first.raw {
		t.Fatalf("replay through b: got %s, want %s", got.raw, first.raw)
	}
	if node, _ := a.cluster.holder(t, "chat", c.id); node != "a" || b.srv.lookup(c.token) != nil {
		t.Fatalf("resume through b: got holder %q (held by b: %v), want a to keep it", node, b.srv.lookup(c.token) != nil)
	}

	// A plain WebSocket connection of a, through b: forwarded.
	n := a.negotiate("chat", "")
	p, resp, err := b.dialWS("chat", "id="+url.QueryEscape(n.ConnectionToken), nil)
	if err != nil {
		t.Fatalf("plain upgrade through b: got error %v (status %v), want a WebSocket to a", err, statusOf(resp))
	}
	p.handshake()
	if a.srv.lookup(n.ConnectionToken) == nil || b.srv.lookup(n.ConnectionToken) != nil {
		t.Fatal("plain connection through b: got it held other than by a")
	}

	// A closed stateful connection: 404 on either node, and also when a is
	// unreachable (b must not adopt a closed connection).
	closed := a.openStateful("chat")
	closed.write(`{"type":7}` + rs)
	closed.closed()
	waitFor(t, "the closed connection to be forgotten", func() (bool, string) {
		return a.srv.lookup(closed.token) == nil, "still held"
	})
	mustEqual(t, "resume of a closed connection on a", a.resumeStatus("chat", closed.token), http.StatusNotFound)
	mustEqual(t, "resume of a closed connection through b", b.resumeStatus("chat", closed.token), http.StatusNotFound)
	base.setNodeURL("a", closedURL(t))
	mustEqual(t, "resume of a closed connection through b, a unreachable", b.resumeStatus("chat", closed.token), http.StatusNotFound)

	// A plain connection whose holder is unreachable is not adopted.
	n = a.negotiate("chat", "")
	mustEqual(t, "plain connection through b, a unreachable", b.resumeStatus("chat", n.ConnectionToken), http.StatusNotFound)
	if b.srv.lookup(n.ConnectionToken) != nil {
		t.Fatal("plain connection through b, a unreachable: got it adopted by b, want it refused")
	}
}

// quiet wants no trackable record for d: Pings and Acks only.
func (c *sclient) quiet(d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok || f.err != nil {
				c.t.Fatalf("%s: got read error %v, want the socket open", c.name, f.err)
			}
			c.buf += string(f.data)
			i := strings.LastIndex(c.buf, rs)
			if i < 0 {
				continue
			}
			for _, raw := range splitRecords(c.t, c.buf[:i+1]) {
				if r := parseRecord(c.t, raw); r.Type != 6 && r.Type != typeAck {
					c.t.Fatalf("%s: got %.80s, want nothing while the buffer is full", c.name, raw)
				}
			}
			c.buf = c.buf[i+1:]
		case <-deadline:
			return
		}
	}
}

// publishMany commits messages target [i, pad] for i in [from, to), many
// per entry.
func (fc *fakeCluster) publishMany(t *testing.T, hub, target, pad string, from, to int) {
	t.Helper()
	for lo := from; lo < to; lo += 100 {
		var cmds []fsm.Command
		for i := lo; i < min(lo+100, to); i++ {
			args, _ := json.Marshal([]any{i, pad})
			cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: target, Arguments: args}))
		}
		res, err := fc.Propose(context.Background(), cmds)
		if err != nil || res[0].Err != nil {
			t.Fatalf("publish %d..%d: got errors %v, %v, want nil", lo, lo+len(cmds), err, resultErr(res))
		}
	}
}

// wantNumbered reads the message carrying number i.
func (c *sclient) wantNumbered(i int) {
	c.t.Helper()
	r := c.nextMsg()
	if r.Type != 1 || !strings.HasPrefix(sprintArgs(r.Arguments), "["+strconv.Itoa(i)+",") {
		c.t.Fatalf("%s: got %.80s, want message %d", c.name, r.raw, i)
	}
}

// TestStatefulBackPressureByCount: a client that never acks gets at most
// statefulBufferCount events; the feeder stops reading the log instead of
// queueing (or closing the client as slow); an Ack lets it go on in order.
func TestStatefulBackPressureByCount(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	c := ts.openStateful("chat")
	held := ts.held(c.token)
	const total = statefulBufferCount + 300
	ts.cluster.publishMany(t, "chat", "n", "", 0, total)
	for i := range statefulBufferCount {
		c.wantNumbered(i)
	}
	c.quiet(500 * time.Millisecond)
	n, size, outSeq := buffered(held)
	if n != statefulBufferCount || outSeq != statefulBufferCount || size >= statefulBufferBytes {
		t.Fatalf("full buffer: got %d events (%d bytes, last %d), want %d under %d bytes", n, size, outSeq, statefulBufferCount, statefulBufferBytes)
	}
	if held.isEnding() {
		t.Fatal("client that does not ack: got it closed, want it waiting")
	}
	c.write(ack(statefulBufferCount))
	for i := statefulBufferCount; i < total; i++ {
		c.wantNumbered(i)
	}
	waitFor(t, "the rest to be buffered", func() (bool, string) {
		n, _, outSeq := buffered(held)
		return n == total-statefulBufferCount && outSeq == total, strconv.Itoa(n) + " buffered"
	})
}

// TestStatefulBackPressureByBytes: the byte limit stops the buffer at
// most one event past statefulBufferBytes, however many events one read
// of the log returns.
func TestStatefulBackPressureByBytes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	c := ts.openStateful("chat")
	held := ts.held(c.token)
	const total = 60
	pad := strings.Repeat("x", 4000)
	ts.cluster.publishMany(t, "chat", "big", pad, 0, total)
	waitFor(t, "the buffer to fill", func() (bool, string) {
		_, size, _ := buffered(held)
		return size >= statefulBufferBytes, strconv.Itoa(size) + " bytes"
	})
	n, size, _ := buffered(held)
	held.mb.mu.Lock()
	last := len(held.mb.unacked[n-1].rec)
	held.mb.mu.Unlock()
	if size-last >= statefulBufferBytes || n >= total {
		t.Fatalf("full buffer: got %d events of %d bytes, want it to stop at the first event past %d bytes", n, size, statefulBufferBytes)
	}
	for i := range n {
		c.wantNumbered(i)
	}
	c.quiet(500 * time.Millisecond)
	if got, _, _ := buffered(held); got != n {
		t.Fatalf("unacknowledged buffer: got %d events, want it to stay at %d", got, n)
	}
	// Acking each event as it comes lets all the others through in order.
	c.write(ack(n))
	for i := n; i < total; i++ {
		c.wantNumbered(i)
		c.write(ack(i + 1))
	}
	if held.isEnding() {
		t.Fatal("got the connection closed, want it open")
	}
}

// TestStatefulCheckpointsBatchedPerNode: Acks of several connections that
// arrive within a second are replicated in one command.
func TestStatefulCheckpointsBatchedPerNode(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	var mu sync.Mutex
	var batches []uint64 // checkpoints per CmdCheckpoint command
	ts.cluster.setHook(func(cmds []fsm.Command) {
		for _, cmd := range cmds {
			if cmd.Type() == fsm.CmdCheckpoint {
				// The payload is the holder's node id, then the count.
				idLen, w := binary.Uvarint(cmd[1:])
				n, _ := binary.Uvarint(cmd[1+w+int(idLen):])
				mu.Lock()
				batches = append(batches, n)
				mu.Unlock()
			}
		}
	})
	const conns = 3
	var cs []*sclient
	for range conns {
		c := ts.openStateful("chat")
		c.write(invocation("0", "JoinGroup", "g"))
		cs = append(cs, c)
	}
	for _, c := range cs {
		if r := c.nextMsg(); r.Type != 3 || r.Error != "" {
			t.Fatalf("JoinGroup: got %s, want its Completion", r.raw)
		}
	}
	// Right after the server's Acks (sent on its once-a-second tick), all
	// clients ack their event: the next tick replicates them together.
	for _, c := range cs {
		c.awaitAck(1)
	}
	for _, c := range cs {
		c.write(ack(1))
	}
	for _, c := range cs {
		waitFor(t, "the checkpoints", func() (bool, string) {
			s, ok := ts.cluster.statefulRecord(t, c.token)
			return ok && s.AckSeq == 1, "ack " + strconv.FormatUint(s.AckSeq, 10)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 || batches[0] != conns {
		t.Fatalf("checkpoint commands: got %v checkpoints per command, want one command with %d", batches, conns)
	}
}

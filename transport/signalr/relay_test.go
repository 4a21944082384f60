package signalr

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
)

// relayServer authenticates clients as the user named by their "user"
// query parameter (anonymous without one).
func relayServer(t *testing.T, relayOff ...string) *testServer {
	return newTestServer(t, testOptions(func(o *Options) {
		o.RelayDisabled = relayOff
		o.Authenticate = func(r *http.Request) (Identity, error) {
			return Identity{UserID: r.URL.Query().Get("user")}, nil
		}
	}))
}

// relayClients are connections of several users on hub "chat", plus one
// of alice's on hub "other".
type relayClients struct {
	ts                        *testServer
	alice1, alice2, bob, anon *wsClient
	otherHub                  *wsClient
	marks                     int
}

func newRelayClients(t *testing.T) *relayClients {
	ts := relayServer(t)
	return &relayClients{
		ts:       ts,
		alice1:   ts.openWS("chat", "user=alice"),
		alice2:   ts.openWS("chat", "user=alice"),
		bob:      ts.openWS("chat", "user=bob"),
		anon:     ts.openWS("chat", ""),
		otherHub: ts.openWS("other", "user=alice"),
	}
}

func (rc *relayClients) all() map[string]*wsClient {
	return map[string]*wsClient{"alice1": rc.alice1, "alice2": rc.alice2, "bob": rc.bob, "anon": rc.anon, "otherHub": rc.otherHub}
}

// expect publishes a marker to every connection of both hubs, then wants
// each client to have received target exactly when it is named in to.
func (rc *relayClients) expect(t *testing.T, target string, to ...string) {
	t.Helper()
	rc.marks++
	marker := "marker" + strings.Repeat("!", rc.marks)
	for _, hub := range []string{"chat", "other"} {
		rc.ts.cluster.publish(t, &fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: marker, Arguments: []byte(`[]`)})
	}
	for name, c := range rc.all() {
		want := ""
		for _, n := range to {
			if n == name {
				want = target
			}
		}
		got := strings.Join(c.deliveries(marker), ",")
		if got != want {
			t.Fatalf("%s received %q before the marker, want %q (sent to %v)", name, got, want, to)
		}
	}
}

// ok wants a successful Completion.
func ok(t *testing.T, what string, r record) record {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("%s: got %s, want a successful Completion", what, r.raw)
	}
	return r
}

func TestRelayAudiences(t *testing.T) {
	t.Parallel()
	rc := newRelayClients(t)

	ok(t, "JoinGroup", rc.alice1.invoke("1", "JoinGroup", "g1"))
	ok(t, "joingroup", rc.anon.invoke("1", "joingroup", "g1"))
	ok(t, "JoinGroup on the other hub", rc.otherHub.invoke("1", "JoinGroup", "g1"))
	ok(t, "SendToGroup", rc.bob.invoke("2", "SendToGroup", "g1", "toGroup", 1))
	rc.expect(t, "toGroup", "alice1", "anon")

	ok(t, "LEAVEGROUP", rc.alice1.invoke("3", "LEAVEGROUP", "g1"))
	ok(t, "sendtogroup", rc.bob.invoke("4", "sendtogroup", "g1", "toGroupAgain"))
	rc.expect(t, "toGroupAgain", "anon")

	ok(t, "SendToUser", rc.bob.invoke("5", "SendToUser", "alice", "toAlice"))
	rc.expect(t, "toAlice", "alice1", "alice2")

	ok(t, "SendToConnection", rc.anon.invoke("6", "SendToConnection", rc.bob.id, "toBob"))
	rc.expect(t, "toBob", "bob")

	ok(t, "SendToAll", rc.anon.invoke("7", "sendToAll", "toAll"))
	rc.expect(t, "toAll", "alice1", "alice2", "bob", "anon")
}

func TestRelayExcluded(t *testing.T) {
	t.Parallel()
	rc := newRelayClients(t)
	cl := rc.ts.cluster
	cl.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Excluded: []string{rc.alice1.id, rc.bob.id}, Target: "allBut", Arguments: []byte(`[]`)})
	rc.expect(t, "allBut", "alice2", "anon")

	ok(t, "JoinGroup", rc.alice1.invoke("1", "JoinGroup", "g"))
	ok(t, "JoinGroup", rc.bob.invoke("1", "JoinGroup", "g"))
	cl.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"g"}, Excluded: []string{rc.bob.id}, Target: "groupBut", Arguments: []byte(`[]`)})
	rc.expect(t, "groupBut", "alice1")
}

func TestRelayUserGroupMembers(t *testing.T) {
	t.Parallel()
	rc := newRelayClients(t)
	// A REST-style membership of a user reaches each of its connections.
	mem := &fsm.Membership{Hub: "chat", Group: "fans", Kind: fsm.MemberUser, Member: "alice"}
	if res, err := rc.ts.cluster.Propose(t.Context(), []fsm.Command{fsm.EncodeMembership(mem, true)}); err != nil || res[0].Err != nil {
		t.Fatalf("add user to group: got %v, %v, want nil", err, resultErr(res))
	}
	ok(t, "SendToGroup", rc.bob.invoke("1", "SendToGroup", "fans", "toFans"))
	rc.expect(t, "toFans", "alice1", "alice2")
}

func TestRelayErrors(t *testing.T) {
	t.Parallel()
	ts := relayServer(t, "locked")
	c := ts.openWS("chat", "")

	r := c.invoke("1", "NoSuchMethod", "x")
	if r.Error != "Unknown hub method 'NoSuchMethod'" || r.Result != nil {
		t.Fatalf("unknown method: got %s, want ASP.NET's error \"Unknown hub method 'NoSuchMethod'\"", r.raw)
	}
	for _, tc := range []struct {
		target string
		args   []any
	}{
		{"SendToGroup", []any{"g"}},      // no target method
		{"SendToUser", []any{"", "m"}},   // empty user
		{"JoinGroup", []any{42}},         // not a string
		{"SendToConnection", []any{nil}}, // null connection id
		{"SendToAll", []any{[]string{}}}, // target is not a string
	} {
		if r := c.invoke("2", tc.target, tc.args...); r.Error == "" || r.Result != nil {
			t.Fatalf("%s%v: got %s, want an error", tc.target, tc.args, r.raw)
		}
	}

	// Fire-and-forget invocations are never answered, not even with an
	// error; the next one with an id is.
	c.write(invocation("", "SendToAll", "fire", 1) + invocation("", "NoSuchMethod") + invocation("3", "SendToAll", "withID"))
	ok(t, "invocation after fire-and-forget ones", c.completion("3")) // fails on any other Completion
	var targets []string
	for range 2 {
		targets = append(targets, c.next().Target)
	}
	mustEqual(t, "deliveries", strings.Join(targets, ","), "fire,withID")

	locked := ts.openWS("locked", "")
	r = locked.invoke("1", "SendToAll", "x")
	if r.Error == "" || !strings.Contains(r.Error, "switched off") {
		t.Fatalf("relay-disabled hub: got %s, want an error", r.raw)
	}
	r = locked.invoke("2", "JoinGroup", "g")
	if r.Error == "" {
		t.Fatalf("relay-disabled hub JoinGroup: got %s, want an error", r.raw)
	}
}

// A client that sends invocations without waiting for their completions
// gets them committed in the order it sent them, and the ones sent while
// a commit is under way share the next proposal.
func TestRelayInvocationsPipelineInOrder(t *testing.T) {
	ts := relayServer(t)
	sender, receiver := ts.openWS("chat", "user=alice"), ts.openWS("chat", "user=bob")
	const n = 20
	release := make(chan struct{})
	var mu sync.Mutex
	var batches []int // commands per proposal carrying the sends
	first := true
	ts.cluster.setHook(func(cmds []fsm.Command) {
		if len(cmds) == 0 || len(cmds[0]) == 0 || fsm.CommandType(cmds[0][0]) != fsm.CmdPublish {
			return // not the sends (a connection record, say)
		}
		mu.Lock()
		batches = append(batches, len(cmds))
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-release // hold the first commit while the rest queue
		}
	})
	// The first send's commit starts (and is held) before the others are
	// sent, so they all queue behind it whatever the machine's load.
	sender.write(invocation("s0", "SendToAll", "seq", 0))
	waitFor(t, "the first send's commit to start", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(batches) == 1, fmt.Sprint(len(batches), " proposals")
	})
	for i := 1; i < n; i++ {
		sender.write(invocation(fmt.Sprint("s", i), "SendToAll", "seq", i))
	}
	ts.srv.mu.RLock()
	c := ts.srv.byID[sender.id]
	ts.srv.mu.RUnlock()
	firstBatch := 0
	waitFor(t, "the sends after the first commit's to queue", func() (bool, string) {
		mu.Lock()
		if len(batches) > 0 {
			firstBatch = batches[0]
		}
		mu.Unlock()
		c.inv.mu.Lock()
		defer c.inv.mu.Unlock()
		return firstBatch > 0 && len(c.inv.queue) == n-firstBatch,
			fmt.Sprintf("%d in the first commit, %d queued", firstBatch, len(c.inv.queue))
	})
	close(release)
	var last uint64
	for i := range n {
		r := sender.completion(fmt.Sprint("s", i))
		idx, err := strconv.ParseUint(string(r.Result), 10, 64)
		if r.Error != "" || err != nil {
			t.Fatalf("completion %d: got %s, want the message index", i, r.raw)
		}
		if idx <= last {
			t.Fatalf("completion %d: got index %d after %d, want indexes in the order sent", i, idx, last)
		}
		last = idx
	}
	for i := range n {
		r := receiver.next()
		if r.Target != "seq" || len(r.Arguments) != 1 || string(r.Arguments[0]) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: got %s, want seq(%d)", i, r.raw, i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	mustEqual(t, "proposals carrying the 20 sends", fmt.Sprint(batches), fmt.Sprint([]int{firstBatch, n - firstBatch}))
}

// When the cluster cannot commit, every invocation of the failed proposal
// completes with the error, and nothing is delivered.
func TestRelayInvocationsFailTogether(t *testing.T) {
	ts := relayServer(t)
	sender, receiver := ts.openWS("chat", "user=alice"), ts.openWS("chat", "user=bob")
	ts.cluster.mu.Lock()
	ts.cluster.fail = errors.New("no leader within 10s")
	ts.cluster.mu.Unlock()
	for i := range 3 {
		sender.write(invocation(fmt.Sprint("f", i), "SendToAll", "seq", i))
	}
	for i := range 3 {
		r := sender.completion(fmt.Sprint("f", i))
		if want := "Failed to invoke 'SendToAll': no leader within 10s"; r.Error != want || len(r.Result) != 0 {
			t.Fatalf("completion %d: got %s, want the error %q and no result", i, r.raw, want)
		}
	}
	ts.cluster.mu.Lock()
	ts.cluster.fail = nil
	ts.cluster.mu.Unlock()
	ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "marker", Arguments: []byte(`[]`)})
	if r := receiver.next(); r.Target != "marker" {
		t.Fatalf("receiver: got %s, want only the marker (the failed sends were not committed)", r.raw)
	}
}

// A client that sends faster than its invocations commit is not read
// beyond maxPendingInvocations queued: the queue stays bounded, and every
// invocation still commits, in order.
func TestRelayInvocationQueueIsBounded(t *testing.T) {
	ts := relayServer(t)
	sender := ts.openWS("chat", "user=alice")
	release := make(chan struct{})
	var once sync.Once
	ts.cluster.setHook(func(cmds []fsm.Command) {
		if len(cmds) > 0 && len(cmds[0]) > 0 && fsm.CommandType(cmds[0][0]) == fsm.CmdPublish {
			once.Do(func() { <-release })
		}
	})
	// The commit held may already carry a whole queue's worth (the reader
	// can get ahead of the first dispatch), so send enough to fill the
	// queue again behind it.
	const n = 2*maxPendingInvocations + 40
	go func() {
		for i := range n {
			// Written from another goroutine: the server stops reading, so
			// these writes may block until it reads again.
			if err := sender.conn.WriteMessage(websocket.TextMessage, []byte(invocation(fmt.Sprint("q", i), "SendToAll", "seq", i))); err != nil {
				return
			}
		}
	}()
	ts.srv.mu.RLock()
	c := ts.srv.byID[sender.id]
	ts.srv.mu.RUnlock()
	queued := func() int {
		c.inv.mu.Lock()
		defer c.inv.mu.Unlock()
		return len(c.inv.queue)
	}
	waitFor(t, "the invocation queue to fill", func() (bool, string) {
		return queued() == maxPendingInvocations, fmt.Sprintf("%d queued", queued())
	})
	// While the first commit is held, the queue stays at its bound.
	for range 20 {
		if q := queued(); q > maxPendingInvocations {
			t.Fatalf("got %d queued invocations, want at most %d", q, maxPendingInvocations)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	var last uint64
	for i := range n {
		r := sender.completion(fmt.Sprint("q", i))
		idx, err := strconv.ParseUint(string(r.Result), 10, 64)
		if r.Error != "" || err != nil || idx <= last {
			t.Fatalf("completion %d: got %s after index %d, want the next message index", i, r.raw, last)
		}
		last = idx
	}
}

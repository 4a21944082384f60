package signalr2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
)

// TestLongPollCursorIsTheLogIndex: a poll returns exactly the messages
// addressed to the connection after its messageId, in log order, with the
// log index of the last one considered as the new messageId; any earlier
// messageId replays from the log.
func TestLongPollCursorIsTheLogIndex(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{})
	c := negotiate(t, hs.URL, "alice", "Chat") // hub names are case-insensitive: hub "chat"
	init := c.connectLP()
	if init.S != 1 || init.C != "0" || len(init.M) != 0 {
		t.Fatalf("init envelope = %+v, want S 1, C \"0\", no messages", init)
	}
	if r := c.send(`{"H":"chat","M":"JoinGroup","A":["room"],"I":0}`); r["I"] != "0" || r["R"] != nil || r["E"] != nil {
		t.Fatalf("JoinGroup response = %v, want {I: \"0\"} and nothing else", r)
	}
	pub := func(p fsm.Publish) uint64 { p.Target = "m"; return tc.publish(t, &p) }
	all := pub(fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Arguments: []byte(`["all"]`)})
	room := pub(fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"room"}, Arguments: []byte(`["room"]`)})
	pub(fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"other"}, Arguments: []byte(`["other group"]`)})
	user := pub(fsm.Publish{Hub: "chat", Audience: fsm.ToUsers, Names: []string{"alice"}, Arguments: []byte(`["user"]`)})
	pub(fsm.Publish{Hub: "chat", Audience: fsm.ToUsers, Names: []string{"bob"}, Arguments: []byte(`["bob"]`)})
	conn := pub(fsm.Publish{Hub: "chat", Audience: fsm.ToConnections, Names: []string{c.id}, Arguments: []byte(`["conn"]`)})
	pub(fsm.Publish{Hub: "other", Audience: fsm.ToAll, Arguments: []byte(`["other hub"]`)})
	last := pub(fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Excluded: []string{c.id}, Arguments: []byte(`["excluded"]`)})

	want := []string{`chat.m["all"]`, `chat.m["room"]`, `chat.m["user"]`, `chat.m["conn"]`}
	got := c.poll(init.C, "")
	if !slices.Equal(calls(got), want) || got.C != formatCursor(last) {
		t.Fatalf("poll after %s = C %s %v, want C %d %v", init.C, got.C, calls(got), last, want)
	}
	if got.G == "" {
		t.Fatal("the poll after a JoinGroup carries no groups token (G)")
	}
	// Any earlier cursor replays from the log, on any node.
	for _, tc := range []struct {
		after uint64
		want  []string
	}{{all, want[1:]}, {room, want[2:]}, {user, want[3:]}, {conn - 1, want[3:]}} {
		got := c.poll(formatCursor(tc.after), got.G)
		if !slices.Equal(calls(got), tc.want) {
			t.Errorf("poll after %d = %v, want %v", tc.after, calls(got), tc.want)
		}
		if got.G != "" {
			t.Errorf("poll after %d with the current groups token sent G again", tc.after)
		}
	}
}

// TestLongPollWaitsForTheNextMessage: a poll with nothing to say waits
// for the next message, or answers an empty envelope with the same
// cursor after the connection timeout.
func TestLongPollWaitsForTheNextMessage(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{ConnectionTimeout: 300 * time.Millisecond})
	c := negotiate(t, hs.URL, "", "chat")
	init := c.connectLP()
	start := time.Now()
	empty := c.poll(init.C, "")
	if empty.C != init.C || len(empty.M) != 0 || empty.S != 0 {
		t.Fatalf("idle poll = %+v, want C %s and no messages", empty, init.C)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("idle poll answered after %v, before the 300ms connection timeout", d)
	}

	_, hs2 := newTestServer(t, tc, Options{ConnectionTimeout: time.Minute})
	c.base = hs2.URL // another server over the same store: the cursor is the log's
	done := make(chan wireEnvelope, 1)
	go func() { done <- c.poll(init.C, "") }()
	idx := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)})
	select {
	case got := <-done:
		if !slices.Equal(calls(got), []string{`chat.m[1]`}) || got.C != formatCursor(idx) {
			t.Fatalf("poll = C %s %v, want C %d [chat.m[1]]", got.C, calls(got), idx)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting poll did not answer the new message within 10s")
	}
}

// TestCursorAcrossHubs: a connection to two hubs reads both from one
// cursor, merged in log order.
func TestCursorAcrossHubs(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{})
	c := negotiate(t, hs.URL, "", "a", "b")
	init := c.connectLP()
	var want []string
	for i := 0; i < 6; i++ {
		hub := []string{"a", "b", "c"}[i%3]
		tc.publish(t, &fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "m", Arguments: []byte("[" + string(rune('0'+i)) + "]")})
		if hub != "c" {
			want = append(want, hub+".m["+string(rune('0'+i))+"]")
		}
	}
	got := c.poll(init.C, "")
	if !slices.Equal(calls(got), want) || got.C != "6" {
		t.Fatalf("poll = C %s %v, want C 6 %v", got.C, calls(got), want)
	}
}

// TestTrimmedCursorTellsTheClientToStartOver: a messageId older than
// retention gets the "E" envelope (the client stops and its application
// starts a new connection) instead of silently skipping what was lost.
func TestTrimmedCursorTellsTheClientToStartOver(t *testing.T) {
	tc := newTestCluster(t, fsm.Retention{MaxMessages: 3})
	_, hs := newTestServer(t, tc, Options{})
	c := negotiate(t, hs.URL, "", "chat")
	init := c.connectLP()
	for i := 0; i < 10; i++ {
		tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "m"})
	}
	got := c.poll(init.C, "")
	if !strings.Contains(got.E, "no longer retained") || len(got.M) != 0 || got.C != init.C {
		t.Fatalf("poll with a trimmed cursor = %+v, want E about retention, no messages, the same C", got)
	}
	// A cursor that is still covered reads on.
	if got := c.poll("8", ""); got.E != "" || len(got.M) != 2 {
		t.Fatalf("poll after 8 = %+v, want messages 9 and 10", got)
	}
}

// TestGroupsTokenRestoresGroupsOnReconnect: a reconnect whose record is
// gone (expired with a dead holder) restores the groups of its verified
// groups token; a forged or foreign token restores nothing; while the
// record is there, the replicated membership stands.
func TestGroupsTokenRestoresGroupsOnReconnect(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	// A reconnect is a poll: with nothing new it answers at the timeout.
	_, hs := newTestServer(t, tc, Options{ConnectionTimeout: 100 * time.Millisecond})
	c := negotiate(t, hs.URL, "", "chat")
	init := c.connectLP()
	c.send(`{"H":"chat","M":"JoinGroup","A":["room"],"I":1}`)
	first := c.poll(init.C, "")
	if first.G == "" {
		t.Fatal("no groups token after JoinGroup")
	}
	other := negotiate(t, hs.URL, "", "chat")
	other.connectLP()
	other.send(`{"H":"chat","M":"JoinGroup","A":["secret"],"I":1}`)
	foreign := other.poll("0", "").G

	expire := func() {
		t.Helper()
		if _, err := tc.commit(fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: "chat", ConnID: c.id, NodeID: tc.id})); err != nil {
			t.Fatal(err)
		}
		if ok, _ := tc.f.IsMember("chat", "room", fsm.MemberConnection, c.id); ok {
			t.Fatal("still in the group after the expiry")
		}
	}
	isMember := func(group string) bool {
		ok, err := tc.f.IsMember("chat", group, fsm.MemberConnection, c.id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	forged := []byte(first.G)
	forged[len(forged)/3] ^= 1
	for _, tok := range []string{string(forged), foreign, "not a token"} {
		expire()
		c.pollAt("reconnect", first.C, tok)
		if isMember("room") || isMember("secret") {
			t.Fatalf("reconnect with token %q restored groups", tok)
		}
	}
	expire()
	tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"room"}, Target: "m", Arguments: []byte(`["missed"]`)})
	got := c.pollAt("reconnect", first.C, first.G)
	if !isMember("room") {
		t.Fatal("reconnect with its groups token did not restore the group")
	}
	if _, open, _ := tc.Holder("chat", c.id); !open {
		t.Fatal("reconnect did not record the connection again")
	}
	after := tc.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"room"}, Target: "m", Arguments: []byte(`["after"]`)})
	if got = c.poll(got.C, first.G); !slices.Equal(calls(got), []string{`chat.m["after"]`}) || got.C != formatCursor(after) {
		t.Fatalf("poll after the restore = %v (C %s), want the group message %d", calls(got), got.C, after)
	}

	// Record present: the token's stale groups do not override the log.
	c.send(`{"H":"chat","M":"LeaveGroup","A":["room"],"I":2}`)
	c.pollAt("reconnect", got.C, first.G)
	if isMember("room") {
		t.Fatal("a reconnect with a stale token put the connection back into a group it left")
	}
}

// TestDrainingTellsTheClientToReconnect: a poll cut by the node's
// shutdown answers "T":1, so the client reconnects through the balancer.
func TestDrainingTellsTheClientToReconnect(t *testing.T) {
	errDraining := errors.New("draining")
	tc := newTestCluster(t, fsm.DefaultRetention)
	s, err := NewServer(tc, Options{Secrets: [][]byte{testSecret}, Authenticate: testAuth, Draining: errDraining})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	base, stop := context.WithCancelCause(context.Background())
	hs := httptest.NewUnstartedServer(s)
	hs.Config.BaseContext = func(net.Listener) context.Context { return base }
	hs.Start()
	t.Cleanup(hs.Close)
	c := negotiate(t, hs.URL, "", "chat")
	init := c.connectLP()
	done := make(chan wireEnvelope, 1)
	go func() {
		status, body := c.do(http.MethodPost, "poll", url.Values{"transport": {transportLongPoll}}, url.Values{"messageId": {init.C}})
		if status != http.StatusOK {
			t.Errorf("poll: %d %s", status, body)
		}
		done <- decodeEnvelope(t, body)
	}()
	// The poll is waiting once the node counts it as served here.
	testkit.WaitUntil(t, 10*time.Second, "the poll to be in progress", func() bool {
		s.live.mu.Lock()
		defer s.live.mu.Unlock()
		h := s.live.held[c.id]
		return h != nil && h.active == 1
	})
	stop(errDraining)
	select {
	case got := <-done:
		if got.T != 1 || got.C != init.C || got.E != "" {
			t.Fatalf("poll cut by the shutdown = %+v, want T 1 and C %s", got, init.C)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not end with the shutdown")
	}
}

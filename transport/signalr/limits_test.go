package signalr

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
)

// limitsServer is an anonymous relay server with the given limits.
func limitsServer(t *testing.T, edit func(*Options)) *testServer {
	return newTestServer(t, testOptions(func(o *Options) {
		o.Authenticate = func(*http.Request) (Identity, error) { return Identity{}, nil }
		edit(o)
	}))
}

// bigGroup is a distinct group name of about 3 KB (1,000 three-byte
// characters and a number).
func bigGroup(i int) string { return fmt.Sprintf("%04d", i) + strings.Repeat("€", 1000) }

// memberOf reports whether conn is in the replicated group.
func memberOf(t *testing.T, fc *fakeCluster, group, conn string) bool {
	t.Helper()
	members, err := fc.GroupMembers("chat", group)
	if err != nil {
		t.Fatalf("GroupMembers: got error %v, want nil", err)
	}
	for _, m := range members {
		if m.Kind == fsm.MemberConnection && m.Name == conn {
			return true
		}
	}
	return false
}

// joinFlood has one connection send n JoinGroup invocations with 3 KB
// group names without waiting, then collects their completions; it
// returns how many succeeded and the distinct errors.
func joinFlood(t *testing.T, c *wsClient, n int) (succeeded int, errs map[string]int) {
	t.Helper()
	for i := range n {
		c.write(invocation(fmt.Sprint(i), "JoinGroup", bigGroup(i)))
	}
	errs = map[string]int{}
	for range n {
		r := c.next()
		if r.Type != 3 {
			t.Fatalf("flood: got %s, want only Completions (the connection must stay open)", r.raw)
		}
		if r.Error == "" {
			succeeded++
		} else {
			errs[r.Error]++
		}
	}
	return succeeded, errs
}

// checkStoreBound counts the flooded groups the connection is in through
// the replicated state, and the bytes of their names, and wants them
// within the group limit.
func checkStoreBound(t *testing.T, fc *fakeCluster, conn string, n, limit int) int {
	t.Helper()
	groups, nameBytes := 0, 0
	for i := range n {
		if memberOf(t, fc, bigGroup(i), conn) {
			groups++
			nameBytes += len(bigGroup(i))
		}
	}
	if groups > limit || nameBytes > limit*len(bigGroup(0)) {
		t.Fatalf("store after %d joins: the connection is in %d groups (%d bytes of names), want at most %d (%d bytes)",
			n, groups, nameBytes, limit, limit*len(bigGroup(0)))
	}
	return groups
}

// One anonymous client that calls JoinGroup 1,000 times with 3 KB names
// as fast as it can adds at most MaxGroupsPerConnection memberships to the
// replicated store, whatever the rate limit; the rest complete with
// errors, and the connection stays open.
func TestJoinGroupFloodIsBounded(t *testing.T) {
	t.Parallel()
	const n, limit = 1000, 100
	for _, tc := range []struct {
		name        string
		rate        float64
		burst       int
		wantErrText string
	}{
		{"node defaults", 50, 100, "rate limit exceeded (50 invocations/s per connection)"},
		{"no rate limit", -1, 0, "group limit reached (at most 100 groups per connection; leave one first)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := limitsServer(t, func(o *Options) {
				o.MaxGroupsPerConnection, o.InvocationRate, o.InvocationBurst = limit, tc.rate, tc.burst
			})
			c := ts.openWS("chat", "")
			succeeded, errs := joinFlood(t, c, n)
			if succeeded > limit || succeeded+sum(errs) != n {
				t.Fatalf("flood: got %d joins committed and errors %v, want at most %d committed and the rest errors", succeeded, errs, limit)
			}
			if errs["Failed to invoke 'JoinGroup': "+tc.wantErrText] == 0 {
				t.Fatalf("flood: got errors %v, want some %q", errs, tc.wantErrText)
			}
			for e := range errs {
				if !strings.Contains(e, "rate limit exceeded") && !strings.Contains(e, "group limit reached") {
					t.Fatalf("flood: got error %q, want only rate or group limit errors", e)
				}
			}
			mustEqual(t, "groups in the store", checkStoreBound(t, ts.cluster, c.id, n, limit), succeeded)
			// Still open: once it may invoke again, it can leave and join.
			waitFor(t, "a LeaveGroup after the flood", func() (bool, string) {
				r := c.invoke("leave", "LeaveGroup", bigGroup(0))
				return r.Error == "", r.raw
			})
			if tc.rate < 0 {
				ok(t, "JoinGroup in the freed slot", c.invoke("join", "JoinGroup", "fresh"))
			}
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Over the rate, invocations complete with an error and propose nothing;
// the bucket refills at the rate and the same connection invokes again.
func TestInvocationRateLimit(t *testing.T) {
	t.Parallel()
	const rate, burst, n = 10, 5, 30
	ts := limitsServer(t, func(o *Options) { o.InvocationRate, o.InvocationBurst = rate, burst })
	c := ts.openWS("chat", "")
	proposed := countProposals(ts.cluster)
	start := time.Now()
	for i := range n {
		c.write(invocation(fmt.Sprint(i), "SendToAll", "m", i))
	}
	// Refusals complete at once, so they may overtake commits: take the
	// completions in any order, and the deliveries of the committed sends.
	succeeded, completions, delivered := 0, 0, 0
	for completions < n || delivered < succeeded {
		switch r := c.next(); {
		case r.Type == 1 && r.Target == "m":
			delivered++
		case r.Type != 3:
			t.Fatalf("burst: got %s, want Completions and deliveries of m", r.raw)
		case r.Error == "":
			completions++
			succeeded++
		case r.Error == "Failed to invoke 'SendToAll': rate limit exceeded (10 invocations/s per connection)":
			completions++
		default:
			t.Fatalf("invocation %s: got %s, want success or the rate limit error", r.InvocationID, r.raw)
		}
	}
	// The burst, plus what the bucket refilled while they were read.
	refilled := int(time.Since(start).Seconds()*rate) + 1
	if succeeded < burst || succeeded > burst+refilled {
		t.Fatalf("burst of %d: got %d committed, want %d to %d", n, succeeded, burst, burst+refilled)
	}
	mustEqual(t, "commands proposed", proposed(), succeeded)
	mustEqual(t, "messages delivered", delivered, succeeded)
	waitFor(t, "an invocation after the bucket refilled", func() (bool, string) {
		r := c.invoke("again", "SendToAll", "later")
		return r.Error == "", r.raw
	})
	mustEqual(t, "commands proposed", proposed(), succeeded+1)
}

// A connection joins at most MaxGroupsPerConnection groups: re-joining a
// group it is in takes no second slot, a committed leave frees one, and
// pipelined joins never overshoot. A join whose outcome is unknown keeps
// its slot until the client leaves the group.
func TestGroupLimitPerConnection(t *testing.T) {
	t.Parallel()
	const limit = 3
	ts := limitsServer(t, func(o *Options) { o.MaxGroupsPerConnection = limit })
	c := ts.openWS("chat", "")
	other := ts.openWS("chat", "") // a limit is per connection
	refused := func(what string, r record) {
		t.Helper()
		if r.Error != "Failed to invoke 'JoinGroup': group limit reached (at most 3 groups per connection; leave one first)" || r.Result != nil {
			t.Fatalf("%s: got %s, want the group limit error", what, r.raw)
		}
	}
	for _, g := range []string{"a", "b", "c"} {
		ok(t, "JoinGroup "+g, c.invoke(g, "JoinGroup", g))
	}
	refused("a fourth group", c.invoke("d", "JoinGroup", "d"))
	ok(t, "re-joining a", c.invoke("a2", "JoinGroup", "a"))
	ok(t, "re-joining a with other case", c.invoke("a3", "joingroup", "a"))
	refused("a fourth group after re-joins", c.invoke("d2", "JoinGroup", "d"))
	ok(t, "another connection's fourth group", other.invoke("d", "JoinGroup", "d"))
	ok(t, "LeaveGroup b", c.invoke("leave-b", "LeaveGroup", "b"))
	ok(t, "JoinGroup d in the freed slot", c.invoke("d3", "JoinGroup", "d"))
	refused("a fifth group", c.invoke("e", "JoinGroup", "e"))
	ok(t, "leaving a group it is not in", c.invoke("leave-x", "LeaveGroup", "x"))
	refused("a fifth group after leaving a stranger", c.invoke("e2", "JoinGroup", "e"))

	// Pipelined: leave two, then ask for five joins without waiting. A
	// join is checked as it is read, and a leave frees its slot only once
	// committed, so at most two of the joins commit (fewer if they were
	// read before the leaves committed), never more.
	c.write(invocation("l-c", "LeaveGroup", "c") + invocation("l-d", "LeaveGroup", "d"))
	for i := range 5 {
		c.write(invocation(fmt.Sprint("p", i), "JoinGroup", fmt.Sprint("p", i)))
	}
	joined := 0
	for range 7 {
		r := c.next()
		switch {
		case r.Type != 3:
			t.Fatalf("pipelined: got %s, want Completions", r.raw)
		case strings.HasPrefix(r.InvocationID, "l-"):
			ok(t, "pipelined LeaveGroup", r)
		case r.Error == "":
			joined++
		default:
			refused("pipelined JoinGroup "+r.InvocationID, r)
		}
	}
	if joined > 2 {
		t.Fatalf("pipelined joins committed: got %d, want at most the 2 slots the leaves free", joined)
	}
	for i := range 2 - joined {
		ok(t, "JoinGroup in a slot freed by the pipelined leaves", c.invoke(fmt.Sprint("q", i), "JoinGroup", fmt.Sprint("q", i)))
	}
	refused("a join once the freed slots are taken", c.invoke("q", "JoinGroup", "q"))
	n := 0
	for _, g := range []string{"a", "b", "c", "d", "e", "p0", "p1", "p2", "p3", "p4", "q0", "q1", "q"} {
		if memberOf(t, ts.cluster, g, c.id) {
			n++
		}
	}
	mustEqual(t, "groups in the store", n, limit)

	// An unknown outcome counts: the join may have committed.
	ok(t, "LeaveGroup a", c.invoke("leave-a", "LeaveGroup", "a"))
	ts.cluster.mu.Lock()
	ts.cluster.fail = errors.New("fake cluster: timed out")
	ts.cluster.mu.Unlock()
	if r := c.invoke("u", "JoinGroup", "unknown"); !strings.Contains(r.Error, "timed out") {
		t.Fatalf("JoinGroup while proposals fail: got %s, want the proposal's error", r.raw)
	}
	ts.cluster.mu.Lock()
	ts.cluster.fail = nil
	ts.cluster.mu.Unlock()
	refused("a join after one of unknown outcome", c.invoke("f", "JoinGroup", "f"))
	ok(t, "LeaveGroup of the unknown one", c.invoke("leave-u", "LeaveGroup", "unknown"))
	ok(t, "JoinGroup f once it is left", c.invoke("f2", "JoinGroup", "f"))
	mustEqual(t, "groups counted", c.serverConn(ts).groupCount(), limit)
}

// serverConn finds the server's side of a test client's connection.
func (c *wsClient) serverConn(ts *testServer) *conn {
	ts.srv.mu.RLock()
	defer ts.srv.mu.RUnlock()
	sc := ts.srv.byID[c.id]
	if sc == nil {
		c.t.Fatalf("connection %s: not held by the server", c.id)
	}
	return sc
}

// SignalR connections count against their address: a negotiated one
// while it lives, one that skips negotiation while its socket is open.
// Past the limit negotiate and the upgrade get 429; an ended connection
// frees its slot.
func TestConnectionsPerAddress(t *testing.T) {
	t.Parallel()
	limit := access.NewConnLimit(2)
	ts := limitsServer(t, func(o *Options) { o.ConnLimit = limit })
	count := func() int { return limit.Count("127.0.0.1") }
	waitCount := func(what string, want int) {
		t.Helper()
		waitFor(t, what, func() (bool, string) { return count() == want, fmt.Sprint("count ", count()) })
	}
	const refusal = "at most 2 concurrent connections per address"

	negotiated := ts.openWS("chat", "")
	skipped, _, err := ts.dialWS("chat", "", nil)
	if err != nil {
		t.Fatalf("WebSocket without negotiation: got %v, want a socket", err)
	}
	skipped.handshake()
	mustEqual(t, "connections counted", count(), 2)

	resp, body := ts.negotiateRaw("chat", "negotiateVersion=1")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), refusal) {
		t.Fatalf("negotiate past the limit: got %d %q, want 429 naming the limit", resp.StatusCode, body)
	}
	if _, resp, err := ts.dialWS("chat", "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("WebSocket without negotiation past the limit: got %v (status %v), want 429", err, statusOf(resp))
	}
	// The open connections keep working.
	ok(t, "SendToAll on a counted connection", negotiated.invoke("1", "SendToAll", "m"))

	_ = skipped.conn.Close()
	waitCount("the closed socket frees its slot", 1)
	n := ts.negotiate("chat", "") // counted until it ends: here, reaped unused
	mustEqual(t, "connections counted", count(), 2)
	waitFor(t, "the unused negotiation is reaped", func() (bool, string) { return ts.srv.lookup(n.ConnectionToken) == nil, "" })
	waitCount("the reaped connection frees its slot", 1)
	_ = negotiated.conn.Close()
	waitCount("the closed negotiated connection frees its slot", 0)
	ts.openWS("chat", "")
	mustEqual(t, "connections counted", count(), 1)
}

package signalr

import (
	"fmt"
	"strings"
	"testing"
)

// A stateful-reconnect connection is bounded like any other: of 300 joins
// with 3 KB names sent at once, at most MaxGroupsPerConnection commit and
// the rest complete with the group limit's error; the connection stays.
func TestStatefulJoinFloodIsBounded(t *testing.T) {
	t.Parallel()
	const n, limit = 300, 20
	ts := newTestServer(t, statefulOptions(func(o *Options) {
		o.MaxGroupsPerConnection, o.InvocationRate = limit, -1
	}))
	c := ts.openStateful("chat")
	for i := range n {
		c.write(invocation(fmt.Sprint(i), "JoinGroup", bigGroup(i)))
	}
	succeeded, limited := 0, 0
	for range n {
		r := c.nextMsg()
		if r.Type != 3 {
			t.Fatalf("flood: got %s, want only Completions", r.raw)
		}
		switch {
		case r.Error == "":
			succeeded++
		case strings.Contains(r.Error, "group limit reached"):
			limited++
		default:
			t.Fatalf("flood: got error %q, want only the group limit", r.Error)
		}
	}
	if succeeded > limit || succeeded+limited != n || limited == 0 {
		t.Fatalf("flood: %d committed, %d refused; want at most %d committed and the rest refused", succeeded, limited, limit)
	}
	mustEqual(t, "groups in the store", checkStoreBound(t, ts.cluster, c.id, n, limit), succeeded)
}

// Over the rate, a stateful connection's invocations complete with the
// rate limit's error and change nothing.
func TestStatefulInvocationRateLimit(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(func(o *Options) {
		o.InvocationRate, o.InvocationBurst = 1, 3
	}))
	c := ts.openStateful("chat")
	const n = 10
	for i := range n {
		c.write(invocation(fmt.Sprint(i), "JoinGroup", fmt.Sprintf("g%d", i)))
	}
	limited := 0
	for range n {
		r := c.nextMsg()
		if r.Type != 3 {
			t.Fatalf("got %s, want only Completions", r.raw)
		}
		if strings.Contains(r.Error, "rate limit exceeded") {
			limited++
			if memberOf(t, ts.cluster, fmt.Sprintf("g%s", r.InvocationID), c.id) {
				t.Fatalf("invocation %s was refused by the rate limit but its join committed", r.InvocationID)
			}
		}
	}
	if limited < n-4 {
		t.Fatalf("%d of %d invocations refused by the rate limit, want at least %d (burst 3, 1/s)", limited, n, n-4)
	}
}

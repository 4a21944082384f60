package signalr

import (
	"fmt"
	"testing"
)

// Without stateful reconnect, the caller's own copy of a send arrives
// before the invocation's completion, every time, as on one ASP.NET
// server (issue 13, item 7).
func TestOwnCopyBeforeCompletion(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	c := ts.openWS("chat", "")
	for i := 0; i < 30; i++ {
		id := fmt.Sprint(i)
		target, args := "SendToAll", []any{"all", i}
		if i%2 == 1 {
			target, args = "SendToConnection", []any{c.id, "mine", i}
		}
		c.write(invocation(id, target, args...))
		first := c.next()
		if first.Type != 1 {
			t.Fatalf("%s #%d: got %s first, want the caller's own copy before the completion", target, i, first.raw)
		}
		if done := c.next(); done.Type != 3 || done.InvocationID != id || done.Error != "" {
			t.Fatalf("%s #%d: got %s after the copy, want its completion", target, i, done.raw)
		}
	}
}

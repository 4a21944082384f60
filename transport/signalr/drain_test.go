package signalr

import (
	"net/http"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// TestDrainHandsStatefulConnectionsOver: a draining node drops its stateful
// clients' sockets without a Close; a resume relayed to it is handed to the
// relaying node, which takes the connection over with nothing lost; a
// resume straight to it is told to go elsewhere; and when it stops it does
// not close the connection in the cluster.
func TestDrainHandsStatefulConnectionsOver(t *testing.T) {
	t.Parallel()
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", a.url) // a is alive and reachable throughout

	c := a.openStateful("chat")
	if r := c.invoke("0", "JoinGroup", "g"); r.Error != "" {
		t.Fatalf("JoinGroup: got %s, want success", r.raw)
	}
	a.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "before")
	if got := c.nextMsg(); got.Target != "before" {
		t.Fatalf("before the drain: got %s", got.raw)
	}

	a.srv.Drain()
	for _, r := range c.closed() {
		if r.Type == 7 {
			t.Fatalf("a draining node sent a stateful client a Close (%s): it must only drop the socket", r.raw)
		}
	}
	a.cluster.publishTo(t, "chat", fsm.ToGroups, []string{"g"}, "during")

	if got := a.resumeStatus("chat", c.token); got != http.StatusServiceUnavailable {
		t.Fatalf("a resume straight to the draining node: status %d, want 503", got)
	}
	r := b.resume("chat", c)
	r.wantSequence()
	var targets []string
	for len(targets) == 0 || targets[len(targets)-1] != "during" {
		if m := r.nextMsg(); m.Type == 1 {
			targets = append(targets, m.Target)
		}
	}
	// Nothing was acknowledged, so b replays from the start: every message
	// once, in order.
	if got := strings.Join(targets, ","); got != "before,during" {
		t.Fatalf("after the hand-over: got %v, want before,during", got)
	}
	if node, open := a.cluster.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder after the hand-over: got %q (open %v), want b", node, open)
	}

	a.srv.Stop()
	if node, open := a.cluster.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder after the drained node stopped: got %q (open %v), want b, open", node, open)
	}
	r.wantNextDelivery(a.cluster, fsm.ToGroups, []string{"g"}, "on b after a stopped")
}

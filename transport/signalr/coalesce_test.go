package signalr

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// Messages the dispatcher reads together reach each WebSocket in one frame:
// it queues the whole run before it wakes the writers, so a writer never
// starts on the first record while the others are still being queued.
func TestMessagesReadTogetherShareAFrame(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	var clients []*wsClient
	for range 50 {
		clients = append(clients, ts.openWS("chat", ""))
	}

	const n = wakeEvery - 1 // one run: the dispatcher wakes the writers once
	var cmds []fsm.Command
	var want []string
	for i := range n {
		target := fmt.Sprintf("m%d", i)
		cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: target, Arguments: []byte(`[1]`)}))
		want = append(want, target)
	}
	// One Raft entry: applied at once, so the dispatcher reads it in one page.
	if _, err := ts.cluster.Propose(context.Background(), cmds); err != nil {
		t.Fatalf("propose %d publishes: %v", n, err)
	}
	for i, c := range clients {
		var got []string
		for _, raw := range splitRecords(t, string(c.frame().data)) {
			got = append(got, parseRecord(t, raw).Target)
		}
		mustEqual(t, fmt.Sprintf("client %d: targets in its first frame", i), strings.Join(got, ","), strings.Join(want, ","))
	}
}

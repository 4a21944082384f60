package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/testkit"
)

// resumeFixture publishes to a hub through all nodes in turn, cycling
// between a broadcast, a message to group "g1" and one to group "g2", and
// remembers what a reader of broadcasts plus g1 must see.
type resumeFixture struct {
	t       *testing.T
	nodes   []*node
	hub     string
	next    int
	visible []streamMessage // broadcasts and g1 messages, in index order
}

func (f *resumeFixture) publish(count int) {
	f.t.Helper()
	for range count {
		i := f.next
		f.next++
		n := f.nodes[i%len(f.nodes)]
		path := "/api/v1/hubs/" + f.hub
		kind := []string{"all", "g1", "g2"}[i%3]
		if kind != "all" {
			path += "/groups/" + kind
		}
		target := "to-" + kind
		idx := mustPublishTo(f.t, n, path, messageBody(target, i, fmt.Sprintf("payload %d", i)), "")
		if kind != "g2" {
			args, _ := json.Marshal([]any{i, fmt.Sprintf("payload %d", i)})
			f.visible = append(f.visible, streamMessage{Index: idx, Target: target, Arguments: args})
		}
	}
}

// after is the visible messages with index > cursor.
func (f *resumeFixture) after(cursor uint64) []streamMessage {
	var out []streamMessage
	for _, m := range f.visible {
		if m.Index > cursor {
			out = append(out, m)
		}
	}
	return out
}

func (f *resumeFixture) last() uint64 { return f.visible[len(f.visible)-1].Index }

// waitServed waits until n serves every visible message, so a read that
// stops early is not mistaken for a lagging follower.
func (f *resumeFixture) waitServed(n *node) {
	f.t.Helper()
	waitFor(f.t, 10*time.Second, fmt.Sprintf("%s to serve the %d published messages", n, len(f.visible)), func() (bool, string) {
		got, err := readAll(n, f.hub, 0, "g1")
		if err != nil {
			return false, err.Error()
		}
		return len(got) >= len(f.visible), fmt.Sprintf("%d served", len(got))
	})
}

// checkStrictlyIncreasing fails unless indexes strictly increase.
func checkStrictlyIncreasing(t *testing.T, name string, msgs []streamMessage) {
	t.Helper()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Index <= msgs[i-1].Index {
			t.Errorf("%s: index %d follows %d, want strictly increasing", name, msgs[i].Index, msgs[i-1].Index)
			return
		}
	}
}

// TestResumeAcrossNodes reads part of a hub's stream on one node,
// disconnects, lets more messages be published, then resumes from the last
// cursor on another node: the second node must send exactly the rest (no
// gap, no duplicate, in order). Over SSE (Last-Event-ID), long polling
// (after=) and WebSocket (after=), each reader following broadcasts plus
// group g1 while g2 messages are interleaved.
func TestResumeAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, nodeOptions{})
	query := url.Values{"group": {"g1"}}

	t.Run("SSE", func(t *testing.T) {
		f := &resumeFixture{t: t, nodes: nodes, hub: "resume_sse"}
		f.publish(30)
		a, b := nodes[0], nodes[1]
		f.waitServed(a)

		q := cloneValues(query)
		q.Set("after", "0")
		s := openSSE(t, a, f.hub, q, nil, 15*time.Second)
		first, err := s.Next()
		if err != nil {
			t.Fatalf("SSE on %s: read the first block: %v", a, err)
		}
		if len(first.Comments) == 0 {
			t.Errorf("SSE on %s: first block %+v, want a comment line flushed first", a, first)
		}
		var got []streamMessage
		if first.Data != "" {
			got = append(got, decodeSSEMessage(t, a.id, first))
		}
		for len(got) < 10 {
			ev, err := s.Next()
			if err != nil {
				t.Fatalf("SSE on %s after %d messages: %v", a, len(got), err)
			}
			if ev.Data == "" {
				continue
			}
			got = append(got, decodeSSEMessage(t, a.id, ev))
		}
		s.Close()
		if d := diffSequences("SSE on "+a.id, got, "published", f.after(0)[:10]); d != "" {
			t.Fatalf("first read: %s", d)
		}
		lastSeen := got[len(got)-1].Index

		f.publish(30)
		s = openSSE(t, b, f.hub, query, http.Header{"Last-Event-ID": {strconv.FormatUint(lastSeen, 10)}}, 15*time.Second)
		want := f.after(lastSeen)
		var rest []streamMessage
		for len(rest) == 0 || rest[len(rest)-1].Index < f.last() {
			ev, err := s.Next()
			if err != nil {
				t.Fatalf("SSE on %s resumed after %d: %v after %d messages %v, want %d messages up to %d", b, lastSeen, err, len(rest), rest, len(want), f.last())
			}
			if ev.Data == "" {
				continue
			}
			rest = append(rest, decodeSSEMessage(t, b.id, ev))
		}
		s.Close()
		if d := diffSequences("SSE resumed on "+b.id, rest, "published after the cursor", want); d != "" {
			t.Errorf("resume at Last-Event-ID %d: %s", lastSeen, d)
		}
	})

	t.Run("poll", func(t *testing.T) {
		f := &resumeFixture{t: t, nodes: nodes, hub: "resume_poll"}
		f.publish(30)
		a, b := nodes[1], nodes[2]
		f.waitServed(a)

		q := cloneValues(query)
		q.Set("after", "0")
		q.Set("limit", "7")
		q.Set("timeout", "5")
		pr, _, err := poll(a, f.hub, q)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffSequences("poll on "+a.id, pr.Messages, "published", f.after(0)[:7]); d != "" {
			t.Fatalf("first poll (limit 7): %s", d)
		}
		if want := pr.Messages[6].Index; pr.Next != want {
			t.Errorf("first poll (limit 7): next %d, want %d (the last index returned)", pr.Next, want)
		}
		cursor := pr.Next

		f.publish(30)
		want := f.after(cursor)
		var rest []streamMessage
		for len(rest) == 0 || rest[len(rest)-1].Index < f.last() {
			q := cloneValues(query)
			q.Set("after", strconv.FormatUint(cursor, 10))
			q.Set("timeout", "5")
			pr, _, err := poll(b, f.hub, q)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Reset != nil {
				t.Fatalf("poll on %s after %d: unexpected reset %+v", b, cursor, *pr.Reset)
			}
			if len(pr.Messages) == 0 {
				t.Fatalf("poll on %s after %d: nothing within 5s, want messages up to %d", b, cursor, f.last())
			}
			rest = append(rest, pr.Messages...)
			cursor = pr.Next
		}
		if d := diffSequences("poll resumed on "+b.id, rest, "published after the cursor", want); d != "" {
			t.Errorf("resume at after=%d: %s", want[0].Index-1, d)
		}
		checkStrictlyIncreasing(t, "poll resumed on "+b.id, rest)

		// A long poll at the end waits, then answers empty with the same cursor.
		q = cloneValues(query)
		q.Set("after", strconv.FormatUint(cursor, 10))
		q.Set("timeout", "1")
		start := time.Now()
		pr, _, err = poll(a, f.hub, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(pr.Messages) != 0 || pr.Next < cursor {
			t.Errorf("poll at the end (after=%d): got %d messages next %d, want none and next >= %d", cursor, len(pr.Messages), pr.Next, cursor)
		}
		if waited := time.Since(start); waited < 900*time.Millisecond {
			t.Errorf("poll at the end with timeout=1 answered after %s, want it to wait about 1s", waited)
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		f := &resumeFixture{t: t, nodes: nodes, hub: "resume_ws"}
		f.publish(30)
		a, b := nodes[2], nodes[0]
		f.waitServed(a)

		conn := dialWS(t, a, f.hub, 0, query)
		var got []streamMessage
		for len(got) < 10 {
			got = append(got, readWSMessage(t, a.id, conn))
		}
		conn.Close()
		if d := diffSequences("ws on "+a.id, got, "published", f.after(0)[:10]); d != "" {
			t.Fatalf("first read: %s", d)
		}
		lastSeen := got[len(got)-1].Index

		f.publish(30)
		want := f.after(lastSeen)
		conn = dialWS(t, b, f.hub, lastSeen, query)
		var rest []streamMessage
		for len(rest) == 0 || rest[len(rest)-1].Index < f.last() {
			rest = append(rest, readWSMessage(t, b.id, conn))
		}
		conn.Close()
		if d := diffSequences("ws resumed on "+b.id, rest, "published after the cursor", want); d != "" {
			t.Errorf("resume at after=%d: %s", lastSeen, d)
		}
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// decodeSSEMessage parses a message event and checks its id is its index.
func decodeSSEMessage(t *testing.T, where string, ev sseEvent) streamMessage {
	t.Helper()
	if ev.Event != "" && ev.Event != "message" {
		t.Fatalf("SSE on %s: event %q (data %s), want a message event", where, ev.Event, ev.Data)
	}
	var m streamMessage
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("SSE on %s: data %q: %v", where, ev.Data, err)
	}
	if ev.ID != strconv.FormatUint(m.Index, 10) {
		t.Errorf("SSE on %s: event id %q for message index %d, want them equal", where, ev.ID, m.Index)
	}
	return m
}

// dialWS opens GET /v1/hubs/{hub}/ws?after=N on n.
func dialWS(t *testing.T, n *node, hub string, after uint64, query url.Values) *websocket.Conn {
	t.Helper()
	q := cloneValues(query)
	q.Set("after", strconv.FormatUint(after, 10))
	u := "ws://" + n.httpAddr + "/v1/hubs/" + hub + "/ws?" + q.Encode()
	return testkit.DialWS(t, &websocket.Dialer{HandshakeTimeout: 5 * time.Second}, u, nil, u)
}

// readWSFrame reads one text frame within 10s.
func readWSFrame(t *testing.T, where string, conn *websocket.Conn) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("ws on %s: read: %v", where, err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("ws on %s: frame type %d, want a text frame", where, typ)
	}
	return data
}

// readWSMessage reads one frame and decodes it as a message.
func readWSMessage(t *testing.T, where string, conn *websocket.Conn) streamMessage {
	t.Helper()
	data := readWSFrame(t, where, conn)
	var m streamMessage
	if err := json.Unmarshal(data, &m); err != nil || m.Index == 0 {
		t.Fatalf("ws on %s: frame %s, want a message with an index (err %v)", where, data, err)
	}
	return m
}

// TestRetentionReset keeps 10 messages and publishes 30: a cursor older than
// what is retained gets a reset carrying the oldest index (21) before the
// retained messages, over poll, SSE and WebSocket; a cursor at 20 does not.
func TestRetentionReset(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", RetainMessages: 10})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	const hub = "ticker"
	var all []streamMessage
	for i := 1; i <= 30; i++ {
		idx := mustPublishTo(t, n, "/api/v1/hubs/"+hub, messageBody("tick", i), "")
		if idx != uint64(i) {
			t.Fatalf("publish %d on a fresh node: index %d, want %d", i, idx, i)
		}
		all = append(all, streamMessage{Index: idx, Target: "tick", Arguments: json.RawMessage(fmt.Sprintf("[%d]", i))})
	}
	retained := all[20:]

	for _, after := range []string{"0", "5"} {
		pr, _, err := poll(n, hub, url.Values{"after": {after}, "timeout": {"0"}})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Reset == nil || pr.Reset.Oldest != 21 {
			t.Errorf("poll after=%s: reset %+v, want {oldest: 21}", after, pr.Reset)
		}
		if d := diffSequences("poll after="+after, pr.Messages, "retained", retained); d != "" {
			t.Errorf("poll after=%s: %s", after, d)
		}
		if pr.Next != 30 {
			t.Errorf("poll after=%s: next %d, want 30", after, pr.Next)
		}
	}
	pr, _, err := poll(n, hub, url.Values{"after": {"20"}, "timeout": {"0"}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Reset != nil {
		t.Errorf("poll after=20 (nothing missed): reset %+v, want none", *pr.Reset)
	}
	if d := diffSequences("poll after=20", pr.Messages, "retained", retained); d != "" {
		t.Errorf("poll after=20: %s", d)
	}

	// SSE: the reset comes first, then the retained messages.
	s := openSSE(t, n, hub, nil, http.Header{"Last-Event-ID": {"0"}}, 10*time.Second)
	var events []sseEvent
	var msgs []streamMessage
	for len(msgs) < len(retained) {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("SSE from Last-Event-ID 0: %v after events %+v", err, events)
		}
		if ev.Data == "" {
			continue
		}
		events = append(events, ev)
		if ev.Event == "reset" {
			continue
		}
		msgs = append(msgs, decodeSSEMessage(t, n.id, ev))
	}
	s.Close()
	if len(events) == 0 || events[0].Event != "reset" {
		t.Errorf("SSE from Last-Event-ID 0: first event %+v, want event: reset", events[0])
	} else {
		var reset struct {
			Reset struct {
				Oldest uint64 `json:"oldest"`
			} `json:"reset"`
		}
		if err := json.Unmarshal([]byte(events[0].Data), &reset); err != nil || reset.Reset.Oldest != 21 {
			t.Errorf("SSE reset data %q, want {\"reset\":{\"oldest\":21}}", events[0].Data)
		}
	}
	for _, ev := range events[1:] {
		if ev.Event == "reset" {
			t.Errorf("SSE from Last-Event-ID 0: a second reset %+v", ev)
		}
	}
	if d := diffSequences("SSE after reset", msgs, "retained", retained); d != "" {
		t.Errorf("SSE from Last-Event-ID 0: %s", d)
	}

	// WebSocket: a reset frame first.
	conn := dialWS(t, n, hub, 0, nil)
	frame := readWSFrame(t, n.id, conn)
	if !strings.Contains(string(frame), `"reset"`) || compactJSON(frame) != `{"reset":{"oldest":21}}` {
		t.Errorf("ws after=0: first frame %s, want {\"reset\":{\"oldest\":21}}", frame)
	}
	var wsMsgs []streamMessage
	for len(wsMsgs) < len(retained) {
		wsMsgs = append(wsMsgs, readWSMessage(t, n.id, conn))
	}
	if d := diffSequences("ws after reset", wsMsgs, "retained", retained); d != "" {
		t.Errorf("ws after=0: %s", d)
	}
}

package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// invokeAsync runs InvokeClient in the background.
func invokeAsync(ts *testServer, ctx context.Context, hub, connID, target, args string) <-chan invokeOutcome {
	ch := make(chan invokeOutcome, 1)
	go func() {
		res, err := ts.srv.InvokeClient(ctx, hub, connID, target, []byte(args))
		ch <- invokeOutcome{res, err}
	}()
	return ch
}

type invokeOutcome struct {
	res ClientResult
	err error
}

// An invocation reaches the client with an id and waits for its
// Completion; a Completion from another connection, or for an id nobody
// waits for, answers nothing.
func TestInvokeClientWaitsForItsCompletion(t *testing.T) {
	ts := newTestServer(t, testOptions(nil))
	a, b := ts.openWS("chat", ""), ts.openWS("chat", "")

	out := invokeAsync(ts, context.Background(), "chat", a.id, "add", `[2,{"x":3}]`)
	inv := a.next()
	if inv.Type != 1 || inv.Target != "add" || inv.InvocationID == "" || sprintArgs(inv.Arguments) != `[2,{"x":3}]` {
		t.Fatalf("invocation: got %s, want add with an id and [2,{\"x\":3}]", inv.raw)
	}
	// b cannot answer a's invocation, nor can an unknown id.
	b.write(fmt.Sprintf(`{"type":3,"invocationId":%q,"result":"forged"}`+rs, inv.InvocationID))
	a.write(`{"type":3,"invocationId":"other","result":"stray"}` + rs)
	select {
	case o := <-out:
		t.Fatalf("answered by a stray completion: %+v", o)
	case <-time.After(200 * time.Millisecond):
	}
	a.write(fmt.Sprintf(`{"type":3,"invocationId":%q,"result":{"sum":5}}`+rs, inv.InvocationID))
	o := <-out
	if o.err != nil || o.res.Error != "" || string(o.res.Result) != `{"sum":5}` {
		t.Fatalf("answer: got %+v, want result {\"sum\":5}", o)
	}

	// The client's error, and a void completion (null).
	out = invokeAsync(ts, context.Background(), "chat", a.id, "fail", `[]`)
	inv = a.next()
	a.write(fmt.Sprintf(`{"type":3,"invocationId":%q,"error":"it broke"}`+rs, inv.InvocationID))
	if o := <-out; o.err != nil || o.res.Error != "it broke" {
		t.Fatalf("client error: got %+v", o)
	}
	out = invokeAsync(ts, context.Background(), "chat", a.id, "void", ``)
	inv = a.next()
	if len(inv.Arguments) != 0 {
		t.Fatalf("void invocation: got arguments %s", inv.raw)
	}
	a.write(fmt.Sprintf(`{"type":3,"invocationId":%q}`+rs, inv.InvocationID))
	if o := <-out; o.err != nil || string(o.res.Result) != "null" {
		t.Fatalf("void completion: got %+v, want null", o)
	}
	ts.srv.results.mu.Lock()
	left := len(ts.srv.results.pending)
	ts.srv.results.mu.Unlock()
	if left != 0 {
		t.Fatalf("pending invocations after every answer: %d, want 0", left)
	}
}

// Without an answer the call ends with its context, and with the
// connection; a connection not held here, or of another hub, is
// ErrNotHeld; bad arguments are refused before anything is sent.
func TestInvokeClientWithoutAnswer(t *testing.T) {
	ts := newTestServer(t, testOptions(nil))
	a := ts.openWS("chat", "")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out := invokeAsync(ts, ctx, "chat", a.id, "silent", `[]`)
	a.next()
	if o := <-out; !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("no answer: got %+v, want the deadline", o)
	}

	for _, tc := range []struct{ hub, conn, args string }{{"news", a.id, `[]`}, {"chat", "nobody", `[]`}} {
		if _, err := ts.srv.InvokeClient(context.Background(), tc.hub, tc.conn, "t", []byte(tc.args)); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("%s/%s: got %v, want ErrNotHeld", tc.hub, tc.conn, err)
		}
	}
	if _, err := ts.srv.InvokeClient(context.Background(), "chat", a.id, "t", []byte(`{"not":"an array"}`)); err == nil {
		t.Fatal("arguments not an array: got no error")
	}
	if err := ts.srv.SendStreamItem("chat", a.id, "s", []byte(`{nope`)); err == nil {
		t.Fatal("a stream item that is not JSON: got no error")
	}

	out = invokeAsync(ts, context.Background(), "chat", a.id, "bye", `[]`)
	a.next()
	a.write(`{"type":7}` + rs)
	if o := <-out; !errors.Is(o.err, ErrConnectionEnded) {
		t.Fatalf("connection closed while waiting: got %+v, want ErrConnectionEnded", o)
	}
}

// Stream items reach the client in the order they were sent, each a
// StreamItem of the stream id, and the stream ends with its Completion.
func TestStreamItemsInOrder(t *testing.T) {
	ts := newTestServer(t, testOptions(nil))
	a := ts.openWS("chat", "")
	for i := 0; i < 50; i++ {
		if err := ts.srv.SendStreamItem("chat", a.id, "st", []byte(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if err := ts.srv.CompleteStream("chat", a.id, "st", "done badly"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		r := a.next()
		var item struct {
			Item struct{ I int } `json:"item"`
		}
		if err := json.Unmarshal([]byte(r.raw), &item); err != nil || r.Type != 2 || r.InvocationID != "st" || item.Item.I != i {
			t.Fatalf("item %d: got %s (%v)", i, r.raw, err)
		}
	}
	if r := a.next(); r.Type != 3 || r.InvocationID != "st" || r.Error != "done badly" {
		t.Fatalf("stream end: got %s", r.raw)
	}
}

// To a stateful connection, a client result's invocation, stream items
// and a stream's end are committed to its stream: numbered with the rest,
// in order, and replayed by the node it resumes on if it missed them.
func TestClientCallsToStatefulConnections(t *testing.T) {
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", closedURL(t))
	c := a.openStateful("chat")

	type answer struct {
		res ClientResult
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		res, err := a.srv.InvokeClient(context.Background(), "chat", c.id, "ask", []byte(`["q",1]`))
		answers <- answer{res, err}
	}()
	inv := c.nextMsg()
	if inv.Type != 1 || inv.Target != "ask" || inv.InvocationID == "" || sprintArgs(inv.Arguments) != `["q",1]` {
		t.Fatalf("the client result's invocation: got %s, want ask(\"q\", 1) with an id", inv.raw)
	}
	c.write(`{"type":3,"invocationId":"` + inv.InvocationID + `","result":{"ok":true}}` + rs)
	select {
	case got := <-answers:
		if got.err != nil || string(got.res.Result) != `{"ok":true}` {
			t.Fatalf("InvokeClient: got %s, %v, want the client's result", got.res.Result, got.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("InvokeClient: no answer")
	}

	// Stream items sent while the client is away reach it, in order, on
	// the node it resumes on, then the stream's end.
	c.write(ack(1))
	waitFor(t, "the checkpoint of the client's Ack", func() (bool, string) {
		st, ok := a.cluster.statefulRecord(t, c.token)
		return ok && st.AckSeq == 1, fmt.Sprint("ack ", st.AckSeq)
	})
	c.drop()
	a.waitDetached(c.token)
	for i := range 3 {
		if err := a.srv.SendStreamItem("chat", c.id, "st", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("stream item %d: %v", i, err)
		}
	}
	if err := a.srv.CompleteStream("chat", c.id, "st", "done badly"); err != nil {
		t.Fatalf("complete: %v", err)
	}
	r := b.resume("chat", c)
	mustEqual(t, "Sequence from the new node", r.wantSequence(), int64(2))
	for i := range 3 {
		if got := r.nextMsg(); got.Type != 2 || got.InvocationID != "st" || string(got.Item) != fmt.Sprint(i) {
			t.Fatalf("item %d on b: got %s", i, got.raw)
		}
	}
	if got := r.nextMsg(); got.Type != 3 || got.InvocationID != "st" || got.Error != "done badly" {
		t.Fatalf("stream end on b: got %s", got.raw)
	}
}

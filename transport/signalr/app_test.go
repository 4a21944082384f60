package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
)

// fakeApp is an Application whose methods the tests script: "Add" sums
// its arguments, "Fail" answers an error, "Slow" waits for release,
// "Count" streams 1..n, "Sum" adds an upload stream's items, anything else
// is unknown. It records what it was told.
type fakeApp struct {
	mu           sync.Mutex
	calls        []string // targets, in the order Invoke was called
	active       int      // Invokes running now (plain ones)
	maxActive    int
	connected    []ConnInfo
	disconnected []string // "connID: error"
	release      chan struct{}
	refuse       *Refusal
	admission    Admission
	streamEnded  chan string // why a Count stream ended: "done" or "cancelled"
}

func newFakeApp() *fakeApp {
	return &fakeApp{release: make(chan struct{}), streamEnded: make(chan string, 4)}
}

func (a *fakeApp) Connect(ctx context.Context, c *ConnInfo) (Admission, error) {
	if a.refuse != nil {
		return Admission{}, a.refuse
	}
	return a.admission, nil
}

func (a *fakeApp) Connected(c ConnInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.connected = append(a.connected, c)
}

func (a *fakeApp) Disconnected(c ConnInfo, errMsg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.disconnected = append(a.disconnected, c.ID+": "+errMsg)
}

func (a *fakeApp) Invoke(ctx context.Context, call *Call) Completion {
	m := call.Message
	a.mu.Lock()
	a.calls = append(a.calls, m.Target)
	if m.Type == hubproto.Invocation {
		a.active++
		a.maxActive = max(a.maxActive, a.active)
	}
	a.mu.Unlock()
	defer func() {
		if m.Type == hubproto.Invocation {
			a.mu.Lock()
			a.active--
			a.mu.Unlock()
		}
	}()
	switch m.Target {
	case "Add":
		sum := 0
		for _, arg := range m.Arguments {
			raw, _ := arg.AppendJSON(nil)
			var n int
			if err := json.Unmarshal(raw, &n); err != nil {
				return Completion{Error: "Add takes numbers"}
			}
			sum += n
		}
		return Completion{Result: hubproto.JSONValue(fmt.Append(nil, sum)), HasResult: true}
	case "Fail":
		return Completion{Error: "no, thanks"}
	case "Slow":
		select {
		case <-a.release:
		case <-ctx.Done():
		}
		return Completion{}
	case "Count":
		var n int
		raw, _ := m.Arguments[0].AppendJSON(nil)
		_ = json.Unmarshal(raw, &n)
		for i := 1; i <= n; i++ {
			if err := call.SendItem(hubproto.JSONValue(fmt.Append(nil, i))); err != nil {
				a.streamEnded <- "cancelled"
				return Completion{}
			}
			if n > 100 {
				select { // a long stream: slow enough to be cancelled
				case <-time.After(10 * time.Millisecond):
				case <-call.Cancelled:
					a.streamEnded <- "cancelled"
					return Completion{}
				}
			}
		}
		a.streamEnded <- "done"
		return Completion{}
	case "Sum":
		items, errOf := call.Upload(m.StreamIDs[0])
		sum := 0
		for item := range items {
			raw, _ := item.AppendJSON(nil)
			var n int
			_ = json.Unmarshal(raw, &n)
			sum += n
		}
		if err := errOf(); err != nil {
			return Completion{Error: "upload failed: " + err.Error()}
		}
		return Completion{Result: hubproto.JSONValue(fmt.Append(nil, sum)), HasResult: true}
	}
	return Completion{Unknown: true}
}

func (a *fakeApp) snapshot() (calls []string, maxActive int, connected []ConnInfo, disconnected []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls), a.maxActive, slices.Clone(a.connected), slices.Clone(a.disconnected)
}

func appServer(t *testing.T, app *fakeApp) *testServer {
	return newTestServer(t, testOptions(func(o *Options) { o.Application = app; o.Logger = testLogger(t); o.ClientTimeout = 5 * time.Second }))
}

// A method that is not a relay method reaches the Application, whose
// result, error or "unknown" is the invocation's completion; relay
// methods still work beside it.
func TestApplicationInvocations(t *testing.T) {
	app := newFakeApp()
	ts := appServer(t, app)
	c := ts.openWS("chat", "user=alice")
	if r := c.invoke("1", "Add", 2, 3); r.Error != "" || string(r.Result) != "5" {
		t.Fatalf("Add(2, 3): got %s, want result 5", r.raw)
	}
	if r := c.invoke("2", "Fail"); r.Error != "no, thanks" {
		t.Fatalf("Fail(): got %s, want the application's error", r.raw)
	}
	if r := c.invoke("3", "Nope"); r.Error != "Unknown hub method 'Nope'" {
		t.Fatalf("Nope(): got %s, want ASP.NET's unknown-method text", r.raw)
	}
	if r := c.invoke("4", "SendToAll", "hello", "x"); r.Error != "" || len(r.Result) == 0 {
		t.Fatalf("SendToAll: got %s, want a message index", r.raw)
	}
	calls, _, _, _ := app.snapshot()
	mustEqual(t, "calls the application saw", strings.Join(calls, ","), "Add,Fail,Nope")
}

// A connection's invocations reach the Application one at a time, in the
// order sent, while the connection goes on being read (pings, a second
// connection's calls).
func TestApplicationInvocationsInOrder(t *testing.T) {
	app := newFakeApp()
	ts := appServer(t, app)
	c := ts.openWS("chat", "user=alice")
	c.write(invocation("s", "Slow"))
	for i := range 5 {
		c.write(invocation(fmt.Sprint("a", i), "Add", i, 0))
	}
	// The client's writes reach the server when they do: the other
	// connection starts once Slow runs, so its Add runs beside it.
	waitFor(t, "Slow to reach the application", func() (bool, string) {
		calls, _, _, _ := app.snapshot()
		return len(calls) > 0, fmt.Sprint(calls)
	})
	other := ts.openWS("chat", "user=bob")
	if r := other.invoke("o", "Add", 1, 1); string(r.Result) != "2" {
		t.Fatalf("another connection's Add: got %s, want 2 while the first connection's Slow runs", r.raw)
	}
	close(app.release)
	c.completion("s")
	for i := range 5 {
		if r := c.completion(fmt.Sprint("a", i)); string(r.Result) != fmt.Sprint(i) {
			t.Fatalf("Add(%d, 0): got %s", i, r.raw)
		}
	}
	calls, maxActive, _, _ := app.snapshot()
	// The other connection's Add ran while Slow did; this one's five after.
	mustEqual(t, "calls in order", strings.Join(calls, ","), "Slow,Add,Add,Add,Add,Add,Add")
	mustEqual(t, "invocations of one connection running at once (the other's ran beside)", maxActive <= 2, true)
}

// A stream invocation's items reach the client in order, then its
// completion; a CancelInvocation stops it. An upload stream's items reach
// the Application.
func TestApplicationStreams(t *testing.T) {
	app := newFakeApp()
	ts := appServer(t, app)
	c := ts.openWS("chat", "user=alice")
	c.write(`{"type":4,"invocationId":"c","target":"Count","arguments":[3]}` + rs)
	for i := 1; i <= 3; i++ {
		r := c.next()
		if r.Type != 2 || r.InvocationID != "c" || string(r.Item) != fmt.Sprint(i) {
			t.Fatalf("stream item %d: got %s", i, r.raw)
		}
	}
	if r := c.next(); r.Type != 3 || r.InvocationID != "c" || r.Error != "" {
		t.Fatalf("stream end: got %s, want a plain Completion", r.raw)
	}
	mustEqual(t, "stream ended", <-app.streamEnded, "done")

	c.write(`{"type":4,"invocationId":"long","target":"Count","arguments":[100000]}` + rs)
	if r := c.next(); r.Type != 2 {
		t.Fatalf("long stream: got %s, want an item", r.raw)
	}
	c.write(`{"type":5,"invocationId":"long"}` + rs)
	select {
	case why := <-app.streamEnded:
		mustEqual(t, "long stream ended", why, "cancelled")
	case <-time.After(waitTimeout):
		t.Fatal("the stream went on after the client's CancelInvocation")
	}
	for { // items sent before the cancel, then a plain Completion, as ASP.NET
		r := c.next()
		if r.Type == 3 {
			mustEqual(t, "the cancelled stream's completion", r.InvocationID+" "+r.Error, "long ")
			break
		}
	}

	c.write(`{"type":1,"invocationId":"u","target":"Sum","arguments":[],"streamIds":["up"]}` + rs)
	for i := 1; i <= 4; i++ {
		c.write(fmt.Sprintf(`{"type":2,"invocationId":"up","item":%d}`, i) + rs)
	}
	c.write(`{"type":3,"invocationId":"up"}` + rs)
	if r := c.completion("u"); string(r.Result) != "10" {
		t.Fatalf("Sum of an upload 1..4: got %s, want 10", r.raw)
	}
}

// Connect may refuse a connection with its status, or admit it with a
// user id and groups joined before the client is told it is open;
// Connected and Disconnected come once each.
func TestApplicationConnectionEvents(t *testing.T) {
	app := newFakeApp()
	ts := appServer(t, app)
	app.refuse = &Refusal{Status: http.StatusForbidden, Message: "not today"}
	if resp, body := ts.negotiateRaw("chat", ""); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not today") {
		t.Fatalf("negotiate refused by the application: got %d %q, want 403 with its message", resp.StatusCode, body)
	}
	app.refuse = nil
	app.admission = Admission{UserID: "carol", Groups: []string{"room1"}}
	c := ts.openWS("chat", "user=alice&room=1")
	members, err := ts.cluster.GroupMembers("chat", "room1")
	if err != nil || len(members) != 1 || members[0].Name != c.id {
		t.Fatalf("room1 after the admission: got %v (%v), want the connection", members, err)
	}
	_, _, connected, _ := app.snapshot()
	if len(connected) != 1 || connected[0].ID != c.id || connected[0].UserID != "carol" || connected[0].Query.Get("room") != "1" || connected[0].Protocol != "json" {
		t.Fatalf("Connected: got %+v, want the connection with user carol, its query and protocol", connected)
	}
	c.write(`{"type":7}` + rs) // the client's Close
	waitFor(t, "Disconnected", func() (bool, string) {
		_, _, _, d := app.snapshot()
		return len(d) == 1 && d[0] == c.id+": ", fmt.Sprint(d)
	})
}

// On a stateful connection the Application's completions and stream items
// are committed to the connection's stream (so any node can replay them)
// and reach the client numbered, in order; the client is acknowledged
// only once they are committed.
func TestApplicationStateful(t *testing.T) {
	app := newFakeApp()
	ts := appServer(t, app)
	c := ts.openStateful("chat")
	c.write(invocation("1", "Add", 20, 22))
	c.write(`{"type":4,"invocationId":"c","target":"Count","arguments":[2]}` + rs)
	var got []string
	for len(got) < 4 {
		r := c.nextAny()
		switch r.Type {
		case 2:
			got = append(got, "item "+string(r.Item))
		case 3:
			got = append(got, "completion "+r.InvocationID+" "+string(r.Result)+r.Error)
		}
	}
	mustEqual(t, "stateful events", strings.Join(got, "; "), "completion 1 42; item 1; item 2; completion c ")
	events, _, err := ts.cluster.ReadConnection("chat", c.id, fsm.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, e := range events {
		switch {
		case e.Item:
			logged = append(logged, "item "+string(e.Value))
		case e.Message == nil && !e.Skip:
			logged = append(logged, "completion "+e.InvocationID+" "+string(e.Value)+e.Error)
		}
	}
	mustEqual(t, "the connection's stream in the log", strings.Join(logged, "; "), "completion 1 42; item 1; item 2; completion c ")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// An Application invocation in flight when the client's node dies: the
// client was not acknowledged for it, so it resends it to the node it
// resumes on, which runs it; the client gets its completion once, even
// when the first node's call finishes later (its commit is a duplicate).
func TestApplicationStatefulResumeOnAnotherNode(t *testing.T) {
	base := newFakeCluster(t, "a")
	appA, appB := newFakeApp(), newFakeApp()
	close(appB.release) // b's Slow returns at once
	a := startServer(t, base, statefulOptions(func(o *Options) { o.Application = appA }), nil)
	b := startPeer(t, base, "b", statefulOptions(func(o *Options) { o.Application = appB }))
	base.setNodeURL("a", closedURL(t))

	c := a.openStateful("chat")
	old := a.held(c.token)
	c.write(invocation("s", "Slow")) // client message 1, in flight on a
	waitFor(t, "a's application to run Slow", func() (bool, string) {
		calls, _, _, _ := appA.snapshot()
		return len(calls) == 1, fmt.Sprint(calls)
	})
	old.mb.mu.Lock()
	handled := old.mb.handled
	old.mb.mu.Unlock()
	mustEqual(t, "client messages a counts as handled while Slow runs", handled, uint64(0))

	c.drop()
	a.waitDetached(c.token)
	r := b.resume("chat", c)
	r.wantSequence()
	r.write(sequence(1) + invocation("s", "Slow")) // the client resends what was not acknowledged
	if got := r.nextMsg(); got.Type != 3 || got.InvocationID != "s" || got.Error != "" {
		t.Fatalf("on b: got %s, want the completion of s", got.raw)
	}
	close(appA.release) // a's call ends now; its commit must change nothing
	waitFor(t, "a's late commit", func() (bool, string) {
		old.mb.mu.Lock()
		defer old.mb.mu.Unlock()
		return old.mb.handled == 1, fmt.Sprint("handled ", old.mb.handled)
	})
	if got := r.invoke("x", "Add", 1, 2); string(got.Result) != "3" {
		t.Fatalf("Add after the resume: got %s, want 3 (and no second completion of s before it)", got.raw)
	}
	events, _, err := base.ReadConnection("chat", c.id, fsm.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	completions := 0
	for _, e := range events {
		if e.Message == nil && e.InvocationID == "s" {
			completions++
		}
	}
	mustEqual(t, "completions of s in the connection's stream", completions, 1)
}

// A new cluster starts at feature level 0 and its leader raises it within
// seconds: a stateful connection's application invocation sent in that
// window waits for the raise and then completes with its result.
func TestApplicationStatefulInvocationWaitsOutTheRaise(t *testing.T) {
	app := newFakeApp()
	cluster := newFakeClusterAt(t, "a", 0)
	ts := startServer(t, cluster, statefulOptions(func(o *Options) {
		o.Application = app
		o.UpgradeWait = 20 * time.Second
	}), nil)
	c := ts.openStateful("chat")
	reads := cluster.levelReads.Load()
	c.write(invocation("1", "Add", 1, 2))
	// The invocation is waiting once the level has been read again and
	// again (every 50 ms while it waits).
	waitFor(t, "the invocation to wait for the level", func() (bool, string) {
		n := cluster.levelReads.Load() - reads
		return n >= 3, fmt.Sprintf("%d reads of the level since the invocation", n)
	})
	if calls, _, _, _ := app.snapshot(); len(calls) != 0 {
		t.Fatalf("the application was called below the level: %v", calls)
	}
	if _, err := cluster.node("a").commit(context.Background(), fsm.EncodeClusterLevel(1)); err != nil {
		t.Fatalf("raise the feature level: %v", err)
	}
	if r := c.nextMsg(); r.Type != 3 || r.Error != "" || string(r.Result) != "3" {
		t.Fatalf("Add once the level is raised: got %s, want result 3", r.raw)
	}
}

// While a member of an older version remains (feature level 0), a
// stateful connection's application invocations complete, after
// UpgradeWait, with an error that says so, and REST calls to it are
// refused: nothing is proposed that such a member would not apply.
func TestApplicationStatefulWaitsForTheFeatureLevel(t *testing.T) {
	app := newFakeApp()
	ts := startServer(t, newFakeClusterAt(t, "a", 0), statefulOptions(func(o *Options) {
		o.Application = app
		o.UpgradeWait = 100 * time.Millisecond
	}), nil)
	c := ts.openStateful("chat")
	c.write(invocation("1", "Add", 1, 2))
	if r := c.nextMsg(); r.Type != 3 || !strings.Contains(r.Error, "being upgraded") {
		t.Fatalf("Add at feature level 0: got %s, want an error completion saying the cluster is being upgraded", r.raw)
	}
	if _, err := ts.srv.InvokeClient(context.Background(), "chat", c.id, "t", []byte(`[]`)); !errors.Is(err, ErrUpgrading) {
		t.Fatalf("InvokeClient at feature level 0: got %v, want ErrUpgrading", err)
	}
	if err := ts.srv.SendStreamItem("chat", c.id, "s", []byte(`1`)); !errors.Is(err, ErrUpgrading) {
		t.Fatalf("SendStreamItem at feature level 0: got %v, want ErrUpgrading", err)
	}
	// A connection without stateful reconnect needs nothing from the log.
	plain := ts.openWS("chat", "user=bob")
	if r := plain.invoke("2", "Add", 2, 2); string(r.Result) != "4" {
		t.Fatalf("Add on a plain connection at level 0: got %s, want 4", r.raw)
	}
}

// A server-to-client stream running when the client resumes on another
// node ends there with an error completion (the node that ran it no
// longer serves the connection), after the items it sent.
func TestApplicationStatefulStreamEndsOnResumeElsewhere(t *testing.T) {
	base := newFakeCluster(t, "a")
	appA, appB := newFakeApp(), newFakeApp()
	a := startServer(t, base, statefulOptions(func(o *Options) { o.Application = appA }), nil)
	b := startPeer(t, base, "b", statefulOptions(func(o *Options) { o.Application = appB }))
	base.setNodeURL("a", closedURL(t))

	c := a.openStateful("chat")
	c.write(`{"type":4,"invocationId":"long","target":"Count","arguments":[100000]}` + rs)
	first := c.nextMsg()
	if first.Type != 2 || first.InvocationID != "long" {
		t.Fatalf("first item: got %s", first.raw)
	}
	c.drop()
	a.waitDetached(c.token)
	r := b.resume("chat", c)
	r.wantSequence()
	r.write(sequence(2)) // the client's stream invocation (1) was acknowledged or is a duplicate
	for {
		got := r.nextMsg()
		if got.Type == 2 && got.InvocationID == "long" {
			continue // items a committed before the takeover
		}
		if got.Type != 3 || got.InvocationID != "long" || !strings.Contains(got.Error, "no longer serves this connection") {
			t.Fatalf("on b: got %s, want the stream's error completion", got.raw)
		}
		break
	}
	select {
	case why := <-appA.streamEnded:
		mustEqual(t, "a's stream", why, "cancelled")
	case <-time.After(waitTimeout):
		t.Fatal("a's stream went on after the takeover")
	}
}

// An Admission that gives the connection another user id: the connection
// is that user's (Connected says so), and its later requests still carry
// the token of the user who negotiated.
func TestApplicationAdmissionUserWithTokens(t *testing.T) {
	app := newFakeApp()
	app.admission = Admission{UserID: "carol"}
	ts := newTestServer(t, testOptions(func(o *Options) {
		o.Application = app
		o.Authenticate = func(r *http.Request) (Identity, error) {
			if user := r.URL.Query().Get("user"); user != "" {
				return Identity{UserID: user}, nil
			}
			return Identity{}, errors.New("no token")
		}
	}))
	c := ts.openWS("chat", "user=alice")
	_, _, connected, _ := app.snapshot()
	if len(connected) != 1 || connected[0].UserID != "carol" {
		t.Fatalf("Connected: got %+v, want the admitted user carol", connected)
	}
	held := ts.srv.lookup(c.token)
	mustEqual(t, "the connection's user", held.user, "carol")
	if r := c.invoke("1", "Add", 1, 1); string(r.Result) != "2" {
		t.Fatalf("Add over the socket opened with alice's token: got %s", r.raw)
	}
}

// The Application sees the client's query without its access token
// (whatever the case of its name), parsed as (*url.URL).Query parses it.
func TestClientQueryHidesTheAccessToken(t *testing.T) {
	q := clientQuery("room=1&access_token=secret&Access_Token=again&tag=a&tag=b&bad=%zz")
	if q.Has("access_token") || q.Has("Access_Token") {
		t.Fatalf("the access token reached the Application: %v", q)
	}
	if q.Get("room") != "1" || len(q["tag"]) != 2 || q["tag"][1] != "b" {
		t.Fatalf("query: got %v, want room=1 and tag=[a b]", q)
	}
	if q.Has("bad") {
		t.Fatalf("a malformed pair was kept: %v", q)
	}
	if len(clientQuery("")) != 0 {
		t.Fatalf("an empty query: got %v", clientQuery(""))
	}
}

package signalr2

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// fakeApp is an Application that records what it is told and answers
// invocations by method: echo returns its first argument, sum adds its
// arguments, fail returns an error, void returns nothing, block waits
// until release is closed; any other method is unknown. Connect refuses
// a connection whose query has refuse=<status>, and admits one to the
// groups of its query's group=.
type fakeApp struct {
	release chan struct{}

	mu      sync.Mutex
	events  []string // "connect hub", "connected hub", "disconnected hub: err"
	calls   []string // "hub.method id" in the order Invoke was entered
	running int
	maxRun  int
	infos   []signalr.ConnInfo
}

func newFakeApp() *fakeApp { return &fakeApp{release: make(chan struct{})} }

func (a *fakeApp) record(ev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
}

func (a *fakeApp) Connect(_ context.Context, c *signalr.ConnInfo) (signalr.Admission, error) {
	a.record("connect " + c.Hub)
	if st := c.Query.Get("refuse"); st != "" {
		var status int
		fmt.Sscan(st, &status)
		return signalr.Admission{}, &signalr.Refusal{Status: status, Message: "not you"}
	}
	return signalr.Admission{Groups: c.Query["group"]}, nil
}

func (a *fakeApp) Connected(c signalr.ConnInfo) { a.record("connected " + c.Hub) }

func (a *fakeApp) Disconnected(c signalr.ConnInfo, errMsg string) {
	a.record("disconnected " + c.Hub + ": " + errMsg)
}

func (a *fakeApp) Invoke(ctx context.Context, call *signalr.Call) signalr.Completion {
	m := call.Message
	a.mu.Lock()
	a.calls = append(a.calls, call.Conn.Hub+"."+m.Target+" "+m.InvocationID)
	a.infos = append(a.infos, call.Conn)
	a.running++
	a.maxRun = max(a.maxRun, a.running)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running--
		a.mu.Unlock()
	}()
	if _, ok := call.Protocol.(hubproto.JSON); !ok || m.Type != hubproto.Invocation {
		return signalr.Completion{Error: fmt.Sprintf("unexpected protocol %T or type %v", call.Protocol, m.Type)}
	}
	switch m.Target {
	case "echo":
		if len(m.Arguments) == 0 {
			return signalr.Completion{Error: "echo needs an argument"}
		}
		return signalr.Completion{Result: m.Arguments[0], HasResult: true}
	case "sum":
		total := 0.0
		for _, arg := range m.Arguments {
			var v float64
			if err := json.Unmarshal(arg.Data, &v); err != nil {
				return signalr.Completion{Error: "sum takes numbers"}
			}
			total += v
		}
		return signalr.Completion{Result: hubproto.JSONValue([]byte(fmt.Sprint(total))), HasResult: true}
	case "stream":
		if err := call.SendItem(hubproto.JSONValue([]byte("1"))); err != nil {
			return signalr.Completion{Error: err.Error()}
		}
		return signalr.Completion{}
	case "fail":
		return signalr.Completion{Error: "it failed"}
	case "void":
		return signalr.Completion{}
	case "block":
		select {
		case <-a.release:
		case <-ctx.Done():
			return signalr.Completion{Error: "cancelled"}
		}
		return signalr.Completion{}
	}
	return signalr.Completion{Unknown: true}
}

func (a *fakeApp) snapshot() (events, calls []string, maxRun int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events), slices.Clone(a.calls), a.maxRun
}

// listerApp is a fakeApp whose hubs' methods are known ahead of time.
type listerApp struct{ *fakeApp }

func (listerApp) Hubs() []string { return []string{"ChatHub", "bad name"} }
func (listerApp) Methods(hub string) []string {
	if hub == "ChatHub" {
		return []string{"Echo", "Sum", "no;good"}
	}
	return []string{"Nope"}
}

// TestApplicationInvocations: a hub invocation that is not a relay
// method goes to the Application, its result or error comes back as
// {"I","R"} / {"I","E"}, an unknown method gets SignalR 2's text, and
// relay methods stay relay methods (unless switched off on the hub).
func TestApplicationInvocations(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	app := newFakeApp()
	_, hs := newTestServer(t, tc, Options{Application: app, RelayDisabled: []string{"quiet"}})
	c := negotiate(t, hs.URL, "ann", "chat")
	c.connectLP()
	for _, tt := range []struct{ inv, want string }{
		{`{"H":"Chat","M":"echo","A":[{"x": [1, 2]}],"I":0}`, `{"I":"0","R":{"x":[1,2]}}`},
		{`{"H":"chat","M":"sum","A":[1,2,3.5],"I":1}`, `{"I":"1","R":6.5}`},
		{`{"H":"chat","M":"void","A":[],"I":2}`, `{"I":"2"}`},
		{`{"H":"chat","M":"fail","A":[],"I":3}`, `{"I":"3","E":"it failed","H":true}`},
		{`{"H":"chat","M":"nothing","A":[],"I":4}`, `{"I":"4","E":"'nothing' method could not be resolved on hub 'chat'.","H":true}`},
		{`{"H":"chat","M":"stream","A":[],"I":5}`, `{"I":"5","E":"SignalR 2 clients have no streams","H":true}`},
		{`{"H":"chat","M":"JoinGroup","A":["g"],"I":6}`, `{"I":"6"}`},
		{`{"H":"quiet","M":"SendToAll","A":["m"],"I":7}`, `{"I":"7","E":"'SendToAll' method could not be resolved on hub 'quiet'.","H":true}`},
	} {
		st, body := c.do(http.MethodPost, "send", url.Values{"transport": {transportLongPoll}}, url.Values{"data": {tt.inv}})
		if st != http.StatusOK || body != tt.want {
			t.Errorf("send %s = %d %s, want %s", tt.inv, st, body, tt.want)
		}
	}
	if ok, _ := tc.f.IsMember("chat", "g", fsm.MemberConnection, c.id); !ok {
		t.Error("JoinGroup did not reach the relay: the connection is not in the group")
	}
	_, calls, _ := app.snapshot()
	want := []string{"chat.echo 0", "chat.sum 1", "chat.void 2", "chat.fail 3", "chat.nothing 4", "chat.stream 5", "quiet.SendToAll 7"}
	if !slices.Equal(calls, want) {
		t.Fatalf("the application was called with %q, want %q", calls, want)
	}
	app.mu.Lock()
	info := app.infos[0]
	app.mu.Unlock()
	if info.ID != c.id || info.UserID != "ann" || info.Hub != "chat" || info.Protocol != "json" || info.Query.Get("transport") != transportLongPoll || info.Query.Has("connectionToken") {
		t.Errorf("the call's ConnInfo %+v", info)
	}
}

// TestApplicationInvocationsRunOneAtATimeInOrder: a connection's
// invocations reach the Application one at a time, in the order they
// reached the node, over /send and over a WebSocket.
func TestApplicationInvocationsRunOneAtATimeInOrder(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	app := newFakeApp()
	s, hs := newTestServer(t, tc, Options{Application: app, KeepAlive: time.Minute})
	c := negotiate(t, hs.URL, "", "chat")
	c.connectLP()

	// /send: each send is made once the one before it waits its turn.
	results := make(chan string, 4)
	for i := range 4 {
		method := "void"
		if i == 0 {
			method = "block"
		}
		go func() {
			_, body := c.do(http.MethodPost, "send", url.Values{"transport": {transportLongPoll}}, url.Values{"data": {fmt.Sprintf(`{"H":"chat","M":%q,"A":[],"I":%d}`, method, i)}})
			results <- body
		}()
		testkit.WaitFor(t, 10*time.Second, "the send to wait its turn", func() (bool, string) {
			s.calls.mu.Lock()
			defer s.calls.mu.Unlock()
			st := s.calls.conns[c.id]
			busy := 0
			if st != nil {
				busy = st.busy
			}
			return busy == i+1, fmt.Sprintf("%d invocations in progress", busy)
		})
	}
	_, calls, _ := app.snapshot()
	if !slices.Equal(calls, []string{"chat.block 0"}) {
		t.Fatalf("while the first invocation runs the application saw %q", calls)
	}
	close(app.release)
	for range 4 {
		if body := <-results; strings.Contains(body, `"E"`) {
			t.Errorf("send answered %s", body)
		}
	}

	// A WebSocket's frames, written at once.
	ws := negotiate(t, hs.URL, "", "chat")
	sock := dialWS(t, ws, "connect", nil)
	if _, _, err := sock.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := sock.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"H":"chat","M":"echo","A":[%d],"I":%d}`, i, 10+i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 5 {
		_, data, err := sock.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"I":"%d","R":%d}`, 10+i, i); string(data) != want {
			t.Fatalf("frame %d = %s, want %s", i, data, want)
		}
	}
	_, calls, maxRun := app.snapshot()
	want := []string{"chat.block 0", "chat.void 1", "chat.void 2", "chat.void 3", "chat.echo 10", "chat.echo 11", "chat.echo 12", "chat.echo 13", "chat.echo 14"}
	if !slices.Equal(calls, want) || maxRun != 1 {
		t.Fatalf("the application saw %q with up to %d at once, want %q one at a time", calls, maxRun, want)
	}
}

// TestApplicationConnectionEvents: Connect is asked and Connected told
// once per hub at /connect, the admitted groups are joined, Disconnected
// is told once per hub when the connection ends (abort, REST DELETE),
// and a refusal answers its status and records nothing.
func TestApplicationConnectionEvents(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	app := newFakeApp()
	_, hs := newTestServer(t, tc, Options{Application: app})

	c := negotiate(t, hs.URL, "", "chat", "news")
	st, body := c.do(http.MethodPost, "connect", url.Values{"transport": {transportLongPoll}, "group": {"vip"}}, url.Values{})
	if st != http.StatusOK {
		t.Fatalf("connect: %d %s", st, body)
	}
	for _, hub := range []string{"chat", "news"} {
		if ok, _ := tc.f.IsMember(hub, "vip", fsm.MemberConnection, c.id); !ok {
			t.Errorf("the connection is not in the admitted group vip of %s", hub)
		}
	}
	if st, _ := c.do(http.MethodPost, "abort", url.Values{"transport": {transportLongPoll}}, url.Values{}); st != http.StatusOK {
		t.Fatalf("abort: %d", st)
	}
	events, _, _ := app.snapshot()
	want := []string{"connect chat", "connect news", "connected chat", "connected news", "disconnected chat: ", "disconnected news: "}
	if !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}

	d := negotiate(t, hs.URL, "", "chat")
	e := d.connectLP()
	restDelete(t, tc, "chat", d.id)
	if got := d.poll(e.C, ""); got.E != msgClosed {
		t.Fatalf("poll after a REST DELETE: %+v", got)
	}
	events, _, _ = app.snapshot()
	if got := events[len(want):]; !slices.Equal(got, []string{"connect chat", "connected chat", "disconnected chat: " + msgClosed}) {
		t.Fatalf("events of a connection closed through the REST API: %q", got)
	}

	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		r := negotiate(t, hs.URL, "", "chat")
		st, body := r.do(http.MethodPost, "connect", url.Values{"transport": {transportLongPoll}, "refuse": {fmt.Sprint(status)}}, url.Values{})
		if st != status || body != "not you" {
			t.Errorf("refused connect = %d %q, want %d", st, body, status)
		}
		if _, open, _ := tc.Holder("chat", r.id); open {
			t.Errorf("a refused connection was recorded")
		}
	}
}

// TestInvocationRate: a connection's hub invocations beyond its burst
// are answered with an error and change nothing; another connection
// has its own bucket.
func TestInvocationRate(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{InvocationRate: 0.01, InvocationBurst: 2})
	c := negotiate(t, hs.URL, "", "chat")
	c.connectLP()
	before := tc.LastMessage()
	for i := range 2 {
		if r := c.send(fmt.Sprintf(`{"H":"chat","M":"SendToAll","A":["m",%d],"I":%d}`, i, i)); r["E"] != nil {
			t.Fatalf("send %d within the burst: %v", i, r)
		}
	}
	r := c.send(`{"H":"chat","M":"SendToAll","A":["m",2],"I":2}`)
	if e, _ := r["E"].(string); !strings.Contains(e, "rate limit exceeded (0.01 invocations/s per connection)") || r["I"] != "2" {
		t.Fatalf("send over the rate: %v", r)
	}
	if got := tc.LastMessage(); got != before+2 {
		t.Fatalf("%d messages were published, want 2", got-before)
	}
	d := negotiate(t, hs.URL, "", "chat")
	d.connectLP()
	if r := d.send(`{"H":"chat","M":"SendToAll","A":["m"],"I":0}`); r["E"] != nil {
		t.Fatalf("another connection's send: %v", r)
	}
}

// TestProxyScriptListsApplicationMethods: with an Application that lists
// its hubs' methods, /signalr/hubs creates their proxies with those
// methods beside the relay methods; names that are not identifiers are
// left out.
func TestProxyScriptListsApplicationMethods(t *testing.T) {
	tc := newTestCluster(t, fsm.DefaultRetention)
	_, hs := newTestServer(t, tc, Options{Application: listerApp{newFakeApp()}})
	c := client{t: t, base: hs.URL}
	st, js := c.do(http.MethodGet, "hubs", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("hubs: %d", st)
	}
	for _, want := range []string{`hubNames = ["chatHub"]`, `appMethods = {"chathub":["Echo","Sum"]}`, `relayMethods.concat(appMethods[name.toLowerCase()]`} {
		if !strings.Contains(js, want) {
			t.Errorf("the script lacks %q", want)
		}
	}
	for _, bad := range []string{"no;good", "bad name", "Nope"} {
		if strings.Contains(js, bad) {
			t.Errorf("the script carries %q", bad)
		}
	}
}

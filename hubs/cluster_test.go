package hubs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/node"
	"github.com/backplane/backplane/transport/signalr"
)

// clusterHub is the hub of the in-process cluster tests.
type clusterHub struct{ events *eventLog }

// eventLog records OnConnected and OnDisconnected calls.
type eventLog struct {
	mu  sync.Mutex
	got []string
}

func (e *eventLog) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, g := range e.got {
		if g == s {
			return true
		}
	}
	return false
}

func (h clusterHub) OnConnected(ctx *Context) error {
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	h.events.got = append(h.events.got, "connected "+ctx.ConnectionID())
	return nil
}

func (h clusterHub) OnDisconnected(ctx *Context, err error) error {
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	h.events.got = append(h.events.got, "disconnected "+ctx.ConnectionID())
	return nil
}

func (clusterHub) Count(n int) <-chan int {
	ch := make(chan int)
	go func() {
		defer close(ch)
		for i := 1; i <= n; i++ {
			ch <- i
		}
	}()
	return ch
}

func (clusterHub) Total(in <-chan int) int {
	t := 0
	for v := range in {
		t += v
	}
	return t
}

func (clusterHub) WhoAmI(ctx *Context) string     { return ctx.ConnectionID() }
func (clusterHub) WhoAmIUser(ctx *Context) string { return ctx.UserID() }
func (clusterHub) Join(ctx *Context, g string) error {
	return ctx.Groups.Add(ctx, ctx.ConnectionID(), g)
}
func (clusterHub) ToGroup(ctx *Context, g, text string) error {
	return ctx.Clients.Group(g).Send(ctx, "text", text)
}
func (clusterHub) ToAll(ctx *Context, text string) error {
	return ctx.Clients.All().Send(ctx, "text", text)
}
func (clusterHub) ToOthers(ctx *Context, text string) error {
	return ctx.Clients.Others().Send(ctx, "text", text)
}
func (clusterHub) Target(ctx *Context, kind, arg, text string) error {
	cl := ctx.Clients
	var p ClientProxy
	switch kind {
	case "client":
		p = cl.Client(arg)
	case "clients":
		p = cl.Clients(arg)
	case "allExcept":
		p = cl.AllExcept(arg)
	case "groups":
		p = cl.Groups("none", arg)
	case "groupExcept":
		p = cl.GroupExcept(arg, ctx.ConnectionID())
	case "othersInGroup":
		p = cl.OthersInGroup(arg)
	case "caller":
		p = cl.Caller()
	case "user":
		p = cl.User(arg)
	case "users":
		p = cl.Users(strings.Split(arg, ",")...)
	default:
		return NewHubError("unknown kind %q", kind)
	}
	return p.Send(ctx, "text", text)
}

func (clusterHub) Ask(ctx *Context, conn string, a, b int) (int, error) {
	var sum int
	err := ctx.InvokeClient(ctx, conn, "add", &sum, a, b)
	return sum, err
}

func startHubCluster(t *testing.T, events *eventLog) []*Server {
	t.Helper()
	var out []*Server
	for i := 0; i < 3; i++ {
		cfg := node.Config{
			ID:           fmt.Sprintf("node%d", i+1),
			DataDir:      filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i+1)),
			HTTPAddr:     "127.0.0.1:0",
			RaftAddr:     "127.0.0.1:0",
			WriteTimeout: 3 * time.Second,
			JoinTimeout:  20 * time.Second,
		}
		if i > 0 {
			cfg.Join = []string{out[0].Node().HTTPAddr()}
		}
		s, err := New(Config{Node: cfg, OnConnecting: admitByQuery})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Register("cluster", clusterHub{events: events}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; s.Close() })
		out = append(out, s)
		poll(t, 20*time.Second, "a leader and every member", func() bool {
			st, err := s.Node().Status()
			return err == nil && st.Leader.ID != "" && len(st.Members) == i+1
		})
	}
	return out
}

// admitByQuery is the cluster tests' OnConnecting: the user id is the
// query's "user" (a stand-in for an application's own sign-in), and user
// "blocked" is refused.
func admitByQuery(_ context.Context, c *signalr.ConnInfo) (signalr.Admission, error) {
	user := c.Query.Get("user")
	if user == "blocked" {
		return signalr.Admission{}, &signalr.Refusal{Status: http.StatusForbidden, Message: "blocked"}
	}
	return signalr.Admission{UserID: user}, nil
}

func poll(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wsClient is a minimal JSON hub-protocol client.
type wsClient struct {
	t     *testing.T
	ws    *websocket.Conn
	mu    sync.Mutex
	texts []string
	done  map[string]chan map[string]any
	next  int
}

func dial(t *testing.T, addr string) *wsClient { t.Helper(); return dialAs(t, addr, "") }

// dialAs connects, skipping negotiation, as user (see admitByQuery).
func dialAs(t *testing.T, addr, user string) *wsClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/hubs/cluster?user="+url.QueryEscape(user), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, hs, err := ws.ReadMessage(); err != nil || !bytes.HasPrefix(hs, []byte("{}")) {
		t.Fatalf("handshake: %q %v", hs, err)
	}
	c := &wsClient{t: t, ws: ws, done: map[string]chan map[string]any{}}
	go c.read()
	return c
}

func (c *wsClient) read() {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		for _, rec := range bytes.Split(data, []byte("\x1e")) {
			if len(rec) == 0 {
				continue
			}
			var m map[string]any
			if json.Unmarshal(rec, &m) != nil {
				continue
			}
			switch m["type"] {
			case 1.0:
				args, _ := m["arguments"].([]any)
				if id, ok := m["invocationId"].(string); ok && m["target"] == "add" && len(args) == 2 {
					a, _ := args[0].(float64)
					b, _ := args[1].(float64)
					out, _ := json.Marshal(map[string]any{"type": 3, "invocationId": id, "result": a + b})
					_ = c.ws.WriteMessage(websocket.TextMessage, append(out, 0x1e))
					continue
				}
				if m["target"] == "text" && len(args) == 1 {
					c.mu.Lock()
					c.texts = append(c.texts, fmt.Sprint(args[0]))
					c.mu.Unlock()
				}
			case 2.0:
				c.mu.Lock()
				c.texts = append(c.texts, fmt.Sprintf("item %v", m["item"]))
				c.mu.Unlock()
			case 3.0:
				c.mu.Lock()
				ch := c.done[fmt.Sprint(m["invocationId"])]
				c.mu.Unlock()
				if ch != nil {
					ch <- m
				}
			}
		}
	}
}

func (c *wsClient) invoke(target string, args ...any) map[string]any {
	c.t.Helper()
	if args == nil {
		args = []any{}
	}
	c.mu.Lock()
	c.next++
	id := fmt.Sprint(c.next)
	ch := make(chan map[string]any, 1)
	c.done[id] = ch
	c.mu.Unlock()
	out, _ := json.Marshal(map[string]any{"type": 1, "invocationId": id, "target": target, "arguments": args})
	if err := c.ws.WriteMessage(websocket.TextMessage, append(out, 0x1e)); err != nil {
		c.t.Fatal(err)
	}
	select {
	case m := <-ch:
		return m
	case <-time.After(20 * time.Second):
		c.t.Fatalf("no completion of %s", target)
	}
	return nil
}

func (c *wsClient) got(text string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.texts {
		if s == text {
			return true
		}
	}
	return false
}

func TestClusterHubs(t *testing.T) {
	events := &eventLog{}
	srv := startHubCluster(t, events)
	a := dial(t, srv[0].Node().HTTPAddr())
	b := dial(t, srv[1].Node().HTTPAddr())
	c := dial(t, srv[2].Node().HTTPAddr())
	bID, _ := b.invoke("WhoAmI")["result"].(string)
	if bID == "" {
		t.Fatal("WhoAmI gave no id")
	}
	for _, cl := range []*wsClient{a, b} {
		if m := cl.invoke("join", "g"); m["error"] != nil {
			t.Fatalf("Join: %v", m)
		}
	}
	if m := c.invoke("ToGroup", "g", "to-group"); m["error"] != nil {
		t.Fatalf("ToGroup: %v", m)
	}
	poll(t, 10*time.Second, "the group send on nodes 1 and 2", func() bool { return a.got("to-group") && b.got("to-group") })
	if c.got("to-group") {
		t.Error("a non-member got the group send")
	}
	c.invoke("ToOthers", "others")
	poll(t, 10*time.Second, "the others send", func() bool { return a.got("others") && b.got("others") })
	if c.got("others") {
		t.Error("the caller got Others' send")
	}
	a.invoke("ToAll", "all")
	poll(t, 10*time.Second, "the send to all", func() bool { return a.got("all") && b.got("all") && c.got("all") })

	// The other targets: a is in g on node 1, b in g on node 2, c on node 3.
	aID, _ := a.invoke("WhoAmI")["result"].(string)
	for _, tc := range []struct {
		from          *wsClient
		kind, arg, tx string
		want          [3]bool // a, b, c
	}{
		{c, "client", bID, "t-client", [3]bool{false, true, false}},
		{c, "clients", aID, "t-clients", [3]bool{true, false, false}},
		{c, "allExcept", bID, "t-allexcept", [3]bool{true, false, true}},
		{c, "groups", "g", "t-groups", [3]bool{true, true, false}},
		{a, "groupExcept", "g", "t-groupexcept", [3]bool{false, true, false}},
		{b, "othersInGroup", "g", "t-othersingroup", [3]bool{true, false, false}},
		{c, "caller", "", "t-caller", [3]bool{false, false, true}},
	} {
		if m := tc.from.invoke("Target", tc.kind, tc.arg, tc.tx); m["error"] != nil {
			t.Fatalf("Target %s: %v", tc.kind, m)
		}
		wantRecipients(t, tc.kind, c, []*wsClient{a, b, c}, tc.want[:], tc.tx)
	}

	// A client result across nodes: a hub method on node 1 asks the client on node 2.
	if m := a.invoke("Ask", bID, 40, 2); m["result"] != 42.0 {
		t.Fatalf("Ask across nodes = %v", m)
	}
	if m := a.invoke("Add", 1); m["error"] != "Unknown hub method" && m["error"] == nil {
		t.Fatalf("an unknown method completed %v", m)
	}
	if m := a.invoke("Join"); m["error"] != "Invocation provides 0 argument(s) but target expects 1." {
		t.Fatalf("Join without arguments = %v", m)
	}
}

// wantRecipients waits until each of clients that want marks has got the
// send tx, then checks that the others did not: sender sends a marker to
// all, and as sends are committed in order, once every client has the
// marker a client without tx was not sent it. what names the send in
// failures.
func wantRecipients(t *testing.T, what string, sender *wsClient, clients []*wsClient, want []bool, tx string) {
	t.Helper()
	poll(t, 10*time.Second, tx+" at its recipients", func() bool {
		for i, w := range want {
			if w && !clients[i].got(tx) {
				return false
			}
		}
		return true
	})
	marker := tx + "-marker"
	sender.invoke("ToAll", marker)
	poll(t, 10*time.Second, marker, func() bool {
		for _, c := range clients {
			if !c.got(marker) {
				return false
			}
		}
		return true
	})
	for i, w := range want {
		if !w && clients[i].got(tx) {
			t.Errorf("%s reached client %d", what, i)
		}
	}
}

// send writes one record.
func (c *wsClient) send(m map[string]any) {
	c.t.Helper()
	out, _ := json.Marshal(m)
	if err := c.ws.WriteMessage(websocket.TextMessage, append(out, 0x1e)); err != nil {
		c.t.Fatal(err)
	}
}

func TestClusterHubStreamsAndHooks(t *testing.T) {
	events := &eventLog{}
	srv := startHubCluster(t, events)
	a := dial(t, srv[1].Node().HTTPAddr())
	id, _ := a.invoke("WhoAmI")["result"].(string)
	poll(t, 10*time.Second, "OnConnected", func() bool { return events.has("connected " + id) })

	// A server-to-client stream: items then a completion.
	ch := make(chan map[string]any, 1)
	a.mu.Lock()
	a.done["s1"] = ch
	a.mu.Unlock()
	a.send(map[string]any{"type": 4, "invocationId": "s1", "target": "count", "arguments": []any{3}})
	select {
	case m := <-ch:
		if m["error"] != nil {
			t.Fatalf("stream completed with %v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not complete")
	}
	for _, want := range []string{"item 1", "item 2", "item 3"} {
		if !a.got(want) {
			t.Errorf("the stream lacks %q", want)
		}
	}

	// An upload stream: the client streams 10, 20, 12 and completes it.
	up := make(chan map[string]any, 1)
	a.mu.Lock()
	a.done["u1"] = up
	a.mu.Unlock()
	a.send(map[string]any{"type": 1, "invocationId": "u1", "target": "Total", "arguments": []any{}, "streamIds": []string{"up"}})
	for _, v := range []int{10, 20, 12} {
		a.send(map[string]any{"type": 2, "invocationId": "up", "item": v})
	}
	a.send(map[string]any{"type": 3, "invocationId": "up"})
	select {
	case m := <-up:
		if m["result"] != 42.0 {
			t.Fatalf("Total of the upload = %v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Total did not complete")
	}

	a.ws.Close()
	poll(t, 20*time.Second, "OnDisconnected", func() bool { return events.has("disconnected " + id) })
}

// Clients.User and Users reach every connection of the users named,
// on whichever node holds them, and OnConnecting's user id is the one the
// hub sees; OnConnecting's refusal answers the client's request.
func TestClusterHubUsers(t *testing.T) {
	srv := startHubCluster(t, &eventLog{})
	ann1 := dialAs(t, srv[0].Node().HTTPAddr(), "ann")
	ann2 := dialAs(t, srv[1].Node().HTTPAddr(), "ann")
	bob := dialAs(t, srv[2].Node().HTTPAddr(), "bob")
	cid := dialAs(t, srv[2].Node().HTTPAddr(), "cid")
	if m := ann2.invoke("WhoAmIUser"); m["result"] != "ann" {
		t.Fatalf("the hub sees user %v, want ann", m)
	}
	clients := [4]*wsClient{ann1, ann2, bob, cid}
	for _, tc := range []struct {
		kind, arg, tx string
		want          [4]bool
	}{
		{"user", "ann", "t-user", [4]bool{true, true, false, false}},
		{"users", "bob,cid", "t-users", [4]bool{false, false, true, true}},
		{"user", "nobody", "t-nobody", [4]bool{}},
	} {
		if m := bob.invoke("Target", tc.kind, tc.arg, tc.tx); m["error"] != nil {
			t.Fatalf("Target %s: %v", tc.kind, m)
		}
		wantRecipients(t, tc.kind+" "+tc.arg, bob, clients[:], tc.want[:], tc.tx)
	}

	_, res, err := websocket.DefaultDialer.Dial("ws://"+srv[0].Node().HTTPAddr()+"/hubs/cluster?user=blocked", nil)
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("a connection OnConnecting refuses: err %v, status %d, want 403", err, status)
	}
}

package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// s2App is an Application that records what SignalR 2 connections ask of
// it; echo returns its first argument, other methods are unknown.
type s2App struct {
	mu     sync.Mutex
	events []string
	calls  []signalr.ConnInfo
}

func (a *s2App) add(ev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
}

func (a *s2App) Connect(_ context.Context, c *signalr.ConnInfo) (signalr.Admission, error) {
	a.add("connect " + c.Hub)
	return signalr.Admission{}, nil
}
func (a *s2App) Connected(c signalr.ConnInfo) { a.add("connected " + c.Hub) }
func (a *s2App) Disconnected(c signalr.ConnInfo, errMsg string) {
	a.add("disconnected " + c.Hub + " " + errMsg)
}

func (a *s2App) Invoke(_ context.Context, call *signalr.Call) signalr.Completion {
	a.mu.Lock()
	a.calls = append(a.calls, call.Conn)
	a.mu.Unlock()
	if call.Message.Target == "echo" && len(call.Message.Arguments) == 1 {
		return signalr.Completion{Result: call.Message.Arguments[0], HasResult: true}
	}
	return signalr.Completion{Unknown: true}
}

func (a *s2App) snapshot() ([]string, []signalr.ConnInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events), slices.Clone(a.calls)
}

// s2Client is a long-polling SignalR 2 connection driven by hand.
type s2Client struct {
	t          *testing.T
	n          *testNode
	token, id  string
	accessTok  string
	connection string
}

func (c *s2Client) do(what string, form url.Values) httpResult {
	c.t.Helper()
	q := url.Values{"transport": {"longPolling"}, "clientProtocol": {"2.1"}, "connectionData": {`[{"name":"chat"}]`}, "access_token": {c.accessTok}}
	if c.token != "" {
		q.Set("connectionToken", c.token)
	}
	var body []byte
	header := map[string]string{}
	if form != nil {
		body = []byte(form.Encode())
		header["Content-Type"] = "application/x-www-form-urlencoded"
	}
	return doHTTP(c.t, http.MethodPost, c.n.url("/signalr/"+what+"?"+q.Encode()), body, header)
}

func connectS2(t *testing.T, n *testNode, claims jwt.MapClaims) *s2Client {
	t.Helper()
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testAccessKey))
	if err != nil {
		t.Fatal(err)
	}
	c := &s2Client{t: t, n: n, accessTok: tok}
	res := c.do("negotiate", nil)
	var neg struct{ ConnectionToken, ConnectionId string }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &neg) != nil {
		t.Fatalf("negotiate: %d %s", res.status, res.body)
	}
	c.token, c.id = neg.ConnectionToken, neg.ConnectionId
	if res := c.do("connect", url.Values{}); res.status != http.StatusOK {
		t.Fatalf("connect: %d %s", res.status, res.body)
	}
	return c
}

func (c *s2Client) send(inv string) string {
	c.t.Helper()
	res := c.do("send", url.Values{"data": {inv}})
	if res.status != http.StatusOK {
		c.t.Fatalf("send %s: %d %s", inv, res.status, res.body)
	}
	return string(res.body)
}

// TestSignalR2ReachesTheApplication: on a three-node cluster, a SignalR 2
// client's invocations that are not relay methods reach the node's
// Application with the connection's user and claims, relay methods stay
// relay methods, -invocation-rate and -invocation-burst bound them, and
// the Application is told of the connection once at connect and once at
// its end.
func TestSignalR2ReachesTheApplication(t *testing.T) {
	app := &s2App{}
	c := startCluster(t, clusterOptions{accessKey: testAccessKey, tweak: func(cfg *Config) {
		cfg.Application = app
		cfg.InvocationRate, cfg.InvocationBurst = 0.01, 3
		cfg.RelayPolicy = RelayOpen
	}})
	n := c.followers()[0]
	cl := connectS2(t, n, jwt.MapClaims{"nameid": "ann", "team": "blue"})

	if got := cl.send(`{"H":"Chat","M":"echo","A":[{"a":[1,"x"]}],"I":0}`); got != `{"I":"0","R":{"a":[1,"x"]}}` {
		t.Fatalf("echo answered %s", got)
	}
	if got := cl.send(`{"H":"chat","M":"SendToAll","A":["note",1],"I":1}`); !strings.HasPrefix(got, `{"I":"1","R":`) {
		t.Fatalf("SendToAll answered %s, want the message's index", got)
	}
	if got := cl.send(`{"H":"chat","M":"nope","A":[],"I":2}`); got != `{"I":"2","E":"'nope' method could not be resolved on hub 'chat'.","H":true}` {
		t.Fatalf("an unknown method answered %s", got)
	}
	if got := cl.send(`{"H":"chat","M":"echo","A":[1],"I":3}`); !strings.Contains(got, "rate limit exceeded") {
		t.Fatalf("an invocation over the burst answered %s", got)
	}
	_, calls := app.snapshot()
	if len(calls) != 2 {
		t.Fatalf("the application got %d calls, want 2 (echo and nope)", len(calls))
	}
	info := calls[0]
	if info.Hub != "chat" || info.ID != cl.id || info.UserID != "ann" || !slices.Contains(info.Claims, signalr.Claim{Type: "team", Value: "blue"}) || info.Protocol != hubproto.NameJSON {
		t.Fatalf("the call's connection %+v", info)
	}

	if res := cl.do("abort", url.Values{}); res.status != http.StatusOK {
		t.Fatalf("abort: %d %s", res.status, res.body)
	}
	events, _ := app.snapshot()
	if want := []string{"connect chat", "connected chat", "disconnected chat "}; !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// TestSignalR2ConnectionsSurviveTheOrphanSweep: the expiry a restarted
// node runs for its earlier run's connections (hubCluster.ExpireConnections
// with the SignalR layer's keep filter) keeps the SignalR 2 connections
// the node serves and expires the others recorded on it.
func TestSignalR2ConnectionsSurviveTheOrphanSweep(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1, accessKey: testAccessKey})
	n := c.nodes[0]
	cl := connectS2(t, n, jwt.MapClaims{"nameid": "ann"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orphan := fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: "chat", ConnID: "orphan-of-an-earlier-run", NodeID: n.ID()})
	if _, err := n.proposer.ProposeOne(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	count, err := hubCluster{n.Node}.ExpireConnections(ctx, n.ID(), "holder restarted", func(string, string) bool { return false })
	if err != nil || count != 1 {
		t.Fatalf("ExpireConnections = %d, %v; want the orphan only", count, err)
	}
	for id, want := range map[string]bool{cl.id: true, "orphan-of-an-earlier-run": false} {
		waitFor(t, 5*time.Second, "the sweep's outcome to apply", func() (bool, string) {
			_, open, err := n.fsm.Connection("chat", id)
			return err == nil && open == want, id + " not yet as expected"
		})
	}
}

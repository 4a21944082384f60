package signalr2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/transport/netconn"
)

// testCluster is the Cluster of one node over a real state machine (a
// bbolt store in a temporary directory): the writes are applied at once,
// as if committed.
type testCluster struct {
	f  *fsmtest.Applier
	id string

	mu       sync.Mutex
	touchErr error
	touched  map[string][]string // holder → connection ids reported

	// waits counts Changes and AfterChange calls (each wait of a
	// connection for a change), waiting those not stopped or fired yet.
	waits, waiting atomic.Int64
	// waitsOn counts the waits that include each watch (under mu).
	waitsOn map[fsm.Watch]int
}

// countWait counts a wait on watches.
func (c *testCluster) countWait(watches []fsm.Watch) {
	c.waits.Add(1)
	c.waiting.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waitsOn == nil {
		c.waitsOn = map[fsm.Watch]int{}
	}
	for _, w := range watches {
		c.waitsOn[w]++
	}
}

// waitsIncluding is how many waits so far included w.
func (c *testCluster) waitsIncluding(w fsm.Watch) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitsOn[w]
}

// errTestUnreachable is what Touch returns for a holder that is down.
var errTestUnreachable = errors.New("holder unreachable")

func newTestCluster(t testing.TB, retention fsm.Retention) *testCluster {
	return &testCluster{f: fsmtest.Open(t, fsm.Config{Retention: retention}), id: "node-a", touched: map[string][]string{}}
}

// commit applies cmds in one entry and returns the first rejection.
func (c *testCluster) commit(cmds ...fsm.Command) ([]fsm.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, ok := c.f.Commit(time.Now().UnixNano(), cmds...).([]fsm.Result)
	if !ok {
		return nil, fmt.Errorf("apply: unexpected response")
	}
	for _, r := range res {
		if r.Err != nil {
			return res, fmt.Errorf("%w: %w", ErrRejected, r.Err)
		}
	}
	return res, nil
}

// publish commits a message and returns its index.
func (c *testCluster) publish(t testing.TB, p *fsm.Publish) uint64 {
	t.Helper()
	if p.Arguments == nil {
		p.Arguments = []byte("[]")
	}
	res, err := c.commit(fsm.EncodePublish(p))
	if err != nil {
		t.Fatalf("publish %+v: %v", p, err)
	}
	return res[0].Index
}

func (c *testCluster) NodeID() string { return c.id }
func (c *testCluster) Read(f *fsm.Filter, after uint64, limit int) (fsm.Page, error) {
	return c.f.Read(f, after, limit)
}
func (c *testCluster) Changes(watches ...fsm.Watch) (<-chan struct{}, func()) {
	c.countWait(watches)
	changed, stop := c.f.Changes(watches...)
	return changed, sync.OnceFunc(func() { c.waiting.Add(-1); stop() })
}
func (c *testCluster) AfterChange(watches []fsm.Watch, fn func()) func() bool {
	c.countWait(watches)
	stop := c.f.AfterChange(watches, func() { c.waiting.Add(-1); fn() })
	return func() bool {
		stopped := stop()
		if stopped {
			c.waiting.Add(-1)
		}
		return stopped
	}
}
func (c *testCluster) LastMessage() uint64 { return c.f.LastMessage() }
func (c *testCluster) NotReady() string    { return "" }

func (c *testCluster) Groups(hub, connID, userID string) ([]string, error) {
	g, err := c.f.GroupsOf(hub, fsm.MemberConnection, connID)
	if err != nil || userID == "" {
		return g, err
	}
	u, err := c.f.GroupsOf(hub, fsm.MemberUser, userID)
	return append(g, u...), err
}

func (c *testCluster) Holder(hub, connID string) (string, bool, error) {
	info, ok, err := c.f.Connection(hub, connID)
	return info.NodeID, ok, err
}

func (c *testCluster) Open(_ context.Context, o Opening) error {
	var cmds []fsm.Command
	for _, hub := range o.Hubs {
		cmds = append(cmds, fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: c.id}))
		for _, g := range o.Rejoin[hub] {
			cmds = append(cmds, fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: g, Kind: fsm.MemberConnection, Member: o.ConnID}, true))
		}
	}
	_, err := c.commit(cmds...)
	return err
}

func (c *testCluster) Close(_ context.Context, connID string, hubs []string, holderOnly bool, reason string) error {
	node := ""
	if holderOnly {
		node = c.id
	}
	var cmds []fsm.Command
	for _, hub := range hubs {
		cmds = append(cmds, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: connID, NodeID: node, Reason: reason}))
	}
	_, err := c.commit(cmds...)
	return err
}

func testRelayCommand(hub, connID string, r Relay) fsm.Command {
	p := &fsm.Publish{Hub: hub, Target: r.Target, Arguments: r.Arguments, Names: []string{r.Name}}
	switch r.Op {
	case JoinGroup, LeaveGroup:
		return fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: r.Name, Kind: fsm.MemberConnection, Member: connID}, r.Op == JoinGroup)
	case SendToAll:
		p.Audience, p.Names = fsm.ToAll, nil
	case SendToGroup:
		p.Audience = fsm.ToGroups
	case SendToUser:
		p.Audience = fsm.ToUsers
	default:
		p.Audience = fsm.ToConnections
	}
	return fsm.EncodePublish(p)
}

func (c *testCluster) CheckRelay(hub, connID string, r Relay) error {
	return fsm.ValidateCommand(testRelayCommand(hub, connID, r))
}

func (c *testCluster) Relay(_ context.Context, hub, connID string, r Relay) (uint64, error) {
	res, err := c.commit(testRelayCommand(hub, connID, r))
	if err != nil {
		return 0, err
	}
	return res[0].Index, nil
}

func (c *testCluster) Touch(_ context.Context, holder string, connIDs []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touched[holder] = append(c.touched[holder], connIDs...)
	return c.touchErr
}

func (c *testCluster) IsUnreachable(err error) bool { return errors.Is(err, errTestUnreachable) }

// testSecret signs the tokens of the test servers.
var testSecret = []byte("signalr2-test-secret-0123456789")

// testAuth identifies a client by its X-Test-User header; X-Test-Deny
// makes it unauthorized.
func testAuth(r *http.Request, hubs []string) (Identity, error) {
	if r.Header.Get("X-Test-Deny") != "" {
		return Identity{}, fmt.Errorf("%w: denied", ErrUnauthorized)
	}
	return Identity{UserID: r.Header.Get("X-Test-User")}, nil
}

// newTestServer serves a Server over c on a real socket.
func newTestServer(t testing.TB, c *testCluster, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Secrets == nil {
		opts.Secrets = [][]byte{testSecret}
	}
	if opts.Authenticate == nil {
		opts.Authenticate = testAuth
	}
	s, err := NewServer(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/signalr/", s)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		s.Stop()
	})
	return s, hs
}

// newParkingServer starts a server whose idle readers park after 20 ms
// (and whose keep-alives come every minute), with opts' other settings.
// It skips the test where readers cannot park.
func newParkingServer(t *testing.T, opts Options) (*testCluster, *Server, *httptest.Server) {
	t.Helper()
	if _, err := netconn.Shared(); err != nil {
		t.Skipf("readers do not park here: %v", err)
	}
	tc := newTestCluster(t, fsm.DefaultRetention)
	opts.KeepAlive, opts.ParkIdleReaders = time.Minute, 20*time.Millisecond
	s, hs := newTestServer(t, tc, opts)
	return tc, s, hs
}

// client is one SignalR 2 connection as a test drives it.
type client struct {
	t     testing.TB
	base  string
	user  string
	data  string // connectionData
	token string
	id    string
}

// negotiate starts a connection for user on hubs.
func negotiate(t testing.TB, base, user string, hubs ...string) *client {
	t.Helper()
	var entries []map[string]string
	for _, h := range hubs {
		entries = append(entries, map[string]string{"name": h})
	}
	data, _ := json.Marshal(entries)
	c := &client{t: t, base: base, user: user, data: string(data)}
	status, body := c.do(http.MethodGet, "negotiate", url.Values{"clientProtocol": {"2.1"}}, nil)
	if status != http.StatusOK {
		t.Fatalf("negotiate: %d %s", status, body)
	}
	var n negotiateResponse
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("negotiate body %s: %v", body, err)
	}
	c.token, c.id = n.ConnectionToken, n.ConnectionID
	return c
}

// do sends a request to /signalr/<what> with the connection's token and
// data and the query q; form, when set, is the POST body.
func (c *client) do(method, what string, q url.Values, form url.Values) (int, string) {
	c.t.Helper()
	resp := c.doResp(method, what, q, form, nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, what, err)
	}
	return resp.StatusCode, string(b)
}

func (c *client) query(q url.Values) url.Values {
	v := url.Values{}
	for k, vs := range q {
		v[k] = vs
	}
	if c.token != "" && v.Get("connectionToken") == "" {
		v.Set("connectionToken", c.token)
	}
	if c.data != "" {
		v.Set("connectionData", c.data)
	}
	return v
}

func (c *client) doResp(method, what string, q url.Values, form url.Values, ctx context.Context) *http.Response {
	c.t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/signalr/"+what+"?"+c.query(q).Encode(), body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	}
	if c.user != "" {
		req.Header.Set("X-Test-User", c.user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, what, err)
	}
	return resp
}

// wireEnvelope is an envelope as a client reads it.
type wireEnvelope struct {
	C string            `json:"C"`
	S int               `json:"S"`
	T int               `json:"T"`
	G string            `json:"G"`
	E string            `json:"E"`
	M []json.RawMessage `json:"M"`
}

func decodeEnvelope(t testing.TB, body string) wireEnvelope {
	t.Helper()
	var e wireEnvelope
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("envelope %q: %v", body, err)
	}
	return e
}

// connectLP connects over long polling and returns the init envelope.
func (c *client) connectLP() wireEnvelope {
	c.t.Helper()
	status, body := c.do(http.MethodPost, "connect", url.Values{"transport": {transportLongPoll}}, url.Values{})
	if status != http.StatusOK {
		c.t.Fatalf("connect: %d %s", status, body)
	}
	return decodeEnvelope(c.t, body)
}

// poll polls after messageId with a groups token.
func (c *client) poll(messageID, groupsToken string) wireEnvelope {
	c.t.Helper()
	return c.pollAt("poll", messageID, groupsToken)
}

func (c *client) pollAt(what, messageID, groupsToken string) wireEnvelope {
	c.t.Helper()
	form := url.Values{"messageId": {messageID}}
	if groupsToken != "" {
		form.Set("groupsToken", groupsToken)
	}
	status, body := c.do(http.MethodPost, what, url.Values{"transport": {transportLongPoll}}, form)
	if status != http.StatusOK {
		c.t.Fatalf("%s: %d %s", what, status, body)
	}
	return decodeEnvelope(c.t, body)
}

// send invokes a hub method through /send and returns the hub response.
func (c *client) send(inv string) map[string]any {
	c.t.Helper()
	status, body := c.do(http.MethodPost, "send", url.Values{"transport": {transportLongPoll}}, url.Values{"data": {inv}})
	if status != http.StatusOK {
		c.t.Fatalf("send %s: %d %s", inv, status, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		c.t.Fatalf("send response %s: %v", body, err)
	}
	return m
}

// calls renders the client method calls of an envelope as "target(args)".
func calls(e wireEnvelope) []string {
	var out []string
	for _, raw := range e.M {
		var inv struct {
			H, M string
			A    json.RawMessage
		}
		if err := json.Unmarshal(raw, &inv); err != nil {
			out = append(out, "bad: "+string(raw))
			continue
		}
		out = append(out, inv.H+"."+inv.M+string(inv.A))
	}
	return out
}

package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/fsm"
)

// rs is the JSON hub protocol's record separator.
const rs = "\x1e"

// handshakeJSON is the handshake a JSON client sends first.
const handshakeJSON = `{"protocol":"json","version":1}` + rs

// waitTimeout bounds every wait for something the server should do soon.
const waitTimeout = 5 * time.Second

// fakeCluster is an in-memory Cluster: Propose applies commands to a real
// FSM at once, as a single-node Raft would, and reads go to that FSM.
type fakeCluster struct {
	id string
	f  *fsm.FSM

	mu     sync.Mutex // serialises Propose and guards the fields below
	index  uint64     // last Raft index handed out
	closed bool       // the FSM is closed: Propose fails
	urls   map[string]string
	hook   func(cmds []fsm.Command) // runs before each Propose applies
	fail   error                    // when set, Propose fails with it and applies nothing
}

func newFakeCluster(t *testing.T, id string) *fakeCluster {
	t.Helper()
	f, err := fsm.New(fsm.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("fsm.New: got error %v, want nil", err)
	}
	c := &fakeCluster{id: id, f: f, urls: map[string]string{}}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closed = true
		if err := f.Close(); err != nil {
			t.Errorf("FSM Close: got error %v, want nil", err)
		}
	})
	return c
}

func (c *fakeCluster) NodeID() string { return c.id }

func (c *fakeCluster) NodeURL(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.urls[id]
	return u, ok
}

func (c *fakeCluster) setNodeURL(id, u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.urls[id] = u
}

func (c *fakeCluster) Propose(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	hook := c.hook
	c.mu.Unlock()
	if hook != nil {
		hook(cmds)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("fake cluster: closed")
	}
	if c.fail != nil {
		return nil, c.fail
	}
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeEntry(time.Now().UnixNano(), cmds)})
	return res.([]fsm.Result), nil
}

func (c *fakeCluster) ReadAll(after uint64, limit int) (fsm.Page, error) {
	return c.f.ReadAll(after, limit)
}
func (c *fakeCluster) Changed() <-chan struct{} { return c.f.Changed() }
func (c *fakeCluster) LastMessage() uint64      { return c.f.LastMessage() }
func (c *fakeCluster) GroupMembers(hub, group string) ([]fsm.Member, error) {
	return c.f.GroupMembers(hub, group)
}
func (c *fakeCluster) Ready() bool          { return true }
func (c *fakeCluster) AppliedIndex() uint64 { return c.f.AppliedIndex() }
func (c *fakeCluster) ConnectionHolder(hub, conn string) (string, bool, error) {
	info, ok, err := c.f.Connection(hub, conn)
	return info.NodeID, ok, err
}
func (c *fakeCluster) StatefulByToken(hash []byte) (fsm.StatefulState, bool, error) {
	return c.f.StatefulByToken(hash)
}
func (c *fakeCluster) ReadConnection(hub, conn string, after fsm.Position, limit int) ([]fsm.ConnEvent, bool, error) {
	return c.f.ReadConnection(hub, conn, after, limit)
}
func (c *fakeCluster) ConnectionsOn(nodeID string) ([]fsm.ConnectionInfo, error) {
	return c.f.ConnectionsOn(nodeID)
}

// ExpireConnections expires, in one proposal, the connections recorded on
// nodeID that keep does not claim.
func (c *fakeCluster) ExpireConnections(ctx context.Context, nodeID, reason string, keep func(hub, connID string) bool) (int, error) {
	infos, err := c.ConnectionsOn(nodeID)
	if err != nil {
		return 0, err
	}
	var expiries []fsm.Command
	for _, i := range infos {
		if !keep(i.Hub, i.ConnID) {
			expiries = append(expiries, fsm.EncodeConnection(fsm.CmdConnExpire, &fsm.Connection{Hub: i.Hub, ConnID: i.ConnID, NodeID: nodeID, Reason: reason}))
		}
	}
	if len(expiries) == 0 {
		return 0, nil
	}
	_, err = c.Propose(ctx, expiries)
	return len(expiries), err
}

// setHook installs a function that runs before each Propose applies.
func (c *fakeCluster) setHook(hook func(cmds []fsm.Command)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = hook
}

// publish commits p and returns its message index.
func (c *fakeCluster) publish(t *testing.T, p *fsm.Publish) uint64 {
	t.Helper()
	res, err := c.Propose(context.Background(), []fsm.Command{fsm.EncodePublish(p)})
	if err != nil || res[0].Err != nil {
		t.Fatalf("publish %+v: got errors %v, %v, want nil", p, err, resultErr(res))
	}
	return res[0].Index
}

// recorded reports whether the replicated state lists a connection on this
// node.
func (c *fakeCluster) recorded(t *testing.T, connID string) bool {
	t.Helper()
	infos, err := c.ConnectionsOn(c.id)
	if err != nil {
		t.Fatalf("ConnectionsOn(%q): got error %v, want nil", c.id, err)
	}
	return slices.ContainsFunc(infos, func(i fsm.ConnectionInfo) bool { return i.ConnID == connID })
}

// testOptions are short timeouts so reaping, keep-alives and poll timeouts
// show within a second or two; edit applies per-test changes.
func testOptions(edit func(*Options)) Options {
	o := Options{
		DisconnectTimeout: 2 * time.Second,
		KeepAlive:         time.Minute,
		ClientTimeout:     600 * time.Millisecond,
		HandshakeTimeout:  2 * time.Second,
		PollTimeout:       500 * time.Millisecond,
		WriteTimeout:      2 * time.Second,
	}
	if edit != nil {
		edit(&o)
	}
	return o
}

// testServer is a started Server on its own HTTP test server.
type testServer struct {
	t       *testing.T
	srv     *Server
	cluster *fakeCluster
	http    *httptest.Server
	url     string // http://127.0.0.1:port
}

// newTestServer starts a Server for node "a" on a fresh fake cluster.
func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	return startServer(t, newFakeCluster(t, "a"), opts, nil)
}

// startServer serves a Server for cluster; wrap, if set, wraps the
// listener.
func startServer(t *testing.T, cluster *fakeCluster, opts Options, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	s := NewServer(cluster, opts)
	mux := http.NewServeMux()
	s.Register(mux)
	hs := httptest.NewUnstartedServer(mux)
	if wrap != nil {
		hs.Listener = wrap(hs.Listener)
	}
	hs.Start()
	t.Cleanup(hs.Close)
	s.Start()
	t.Cleanup(s.Stop)
	return &testServer{t: t, srv: s, cluster: cluster, http: hs, url: hs.URL}
}

// hubURL is the transport URL of a hub with an optional query.
func (ts *testServer) hubURL(hub, query string) string {
	u := ts.url + "/hubs/" + hub
	if query != "" {
		u += "?" + query
	}
	return u
}

// negotiation is a decoded negotiate response.
type negotiation struct {
	ConnectionID        string `json:"connectionId"`
	ConnectionToken     string `json:"connectionToken"`
	NegotiateVersion    *int   `json:"negotiateVersion"`
	AvailableTransports []struct {
		Transport       string   `json:"transport"`
		TransferFormats []string `json:"transferFormats"`
	} `json:"availableTransports"`
	Error string `json:"error"`

	raw map[string]json.RawMessage
}

// negotiateRaw posts a negotiate and returns the response and its body.
func (ts *testServer) negotiateRaw(hub, query string) (*http.Response, []byte) {
	ts.t.Helper()
	u := ts.url + "/hubs/" + hub + "/negotiate"
	if query != "" {
		u += "?" + query
	}
	return ts.do(http.MethodPost, u, nil, nil)
}

// negotiate negotiates v1 on hub (extra is added to the query) and fails
// the test unless it succeeded.
func (ts *testServer) negotiate(hub, extra string) negotiation {
	ts.t.Helper()
	q := "negotiateVersion=1"
	if extra != "" {
		q += "&" + extra
	}
	resp, body := ts.negotiateRaw(hub, q)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("negotiate %s?%s: got status %d (%s), want 200", hub, q, resp.StatusCode, body)
	}
	n := decodeNegotiation(ts.t, body)
	if n.Error != "" || n.ConnectionToken == "" {
		ts.t.Fatalf("negotiate %s?%s: got %s, want a connection token", hub, q, body)
	}
	return n
}

func decodeNegotiation(t *testing.T, body []byte) negotiation {
	t.Helper()
	var n negotiation
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("negotiate body %q: got decode error %v, want JSON", body, err)
	}
	if err := json.Unmarshal(body, &n.raw); err != nil {
		t.Fatalf("negotiate body %q: got decode error %v, want an object", body, err)
	}
	return n
}

// do sends one request with a deadline and returns the response with its
// body read.
func (ts *testServer) do(method, u string, body []byte, hdr http.Header) (*http.Response, []byte) {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		ts.t.Fatalf("new request %s %s: %v", method, u, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: got error %v, want a response", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatalf("%s %s: reading body: got error %v, want nil", method, u, err)
	}
	return resp, b
}

// status sends a request and returns its status code.
func (ts *testServer) status(method, u string, body []byte, hdr http.Header) int {
	ts.t.Helper()
	resp, _ := ts.do(method, u, body, hdr)
	return resp.StatusCode
}

// post sends client data for a connection and wants 200.
func (ts *testServer) post(hub, token, data string) {
	ts.t.Helper()
	resp, body := ts.do(http.MethodPost, ts.hubURL(hub, "id="+url.QueryEscape(token)), []byte(data), nil)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("POST %q: got status %d (%s), want 200", data, resp.StatusCode, body)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for time.Now().Before(deadline) {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", waitTimeout, what, last)
}

// record is one decoded JSON hub message.
type record struct {
	raw            string
	Type           int               `json:"type"`
	InvocationID   string            `json:"invocationId"`
	Target         string            `json:"target"`
	Arguments      []json.RawMessage `json:"arguments"`
	Result         json.RawMessage   `json:"result"`
	Error          string            `json:"error"`
	AllowReconnect bool              `json:"allowReconnect"`
}

func parseRecord(t *testing.T, raw string) record {
	t.Helper()
	r := record{raw: raw}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("record %q: got decode error %v, want JSON", raw, err)
	}
	return r
}

// splitRecords splits a payload of complete JSON records; it fails the
// test if the payload does not end at a record boundary.
func splitRecords(t *testing.T, payload string) []string {
	t.Helper()
	if payload == "" {
		return nil
	}
	if !strings.HasSuffix(payload, rs) {
		t.Fatalf("payload %q: got no trailing record separator, want whole records", payload)
	}
	return strings.Split(strings.TrimSuffix(payload, rs), rs)
}

// invocation is the JSON record of a client invocation; an empty id makes
// it fire-and-forget.
func invocation(id, target string, args ...any) string {
	if args == nil {
		args = []any{}
	}
	m := map[string]any{"type": 1, "target": target, "arguments": args}
	if id != "" {
		m["invocationId"] = id
	}
	b, _ := json.Marshal(m)
	return string(b) + rs
}

func mustEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

package signalr

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// rs is the JSON hub protocol's record separator.
const rs = "\x1e"

// handshakeJSON is the handshake a JSON client sends first.
const handshakeJSON = `{"protocol":"json","version":1}` + rs

// waitTimeout bounds every wait for something the server should do soon.
const waitTimeout = 5 * time.Second

// testOptions are short timeouts so reaping, keep-alives and poll timeouts
// show within a second or two; edit applies per-test changes.
func testOptions(edit func(*Options)) Options {
	o := Options{
		DisconnectTimeout: 2 * time.Second,
		KeepAlive:         time.Minute,
		ClientTimeout:     600 * time.Millisecond,
		HandshakeTimeout:  2 * time.Second,
		PollTimeout:       500 * time.Millisecond,
		WriteDeadline:     2 * time.Second,
		ProposeTimeout:    2 * time.Second,
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

// startServer serves a Server for cluster's own node; wrap, if set, wraps
// the listener.
func startServer(t *testing.T, cluster *fakeCluster, opts Options, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	return serveNode(t, cluster, cluster.id, opts, wrap)
}

// serveNode serves, over httptest, a Server for node id of cluster; wrap,
// if set, wraps the listener. Both stop when the test ends.
func serveNode(t *testing.T, cluster *fakeCluster, id string, opts Options, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	s := NewServer(cluster.node(id), opts)
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

// waitFor is testkit.WaitFor with this package's waitTimeout.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testkit.WaitFor(t, waitTimeout, what, cond)
}

// record is one decoded JSON hub message.
type record struct {
	raw            string
	Type           int               `json:"type"`
	InvocationID   string            `json:"invocationId"`
	Target         string            `json:"target"`
	Arguments      []json.RawMessage `json:"arguments"`
	Result         json.RawMessage   `json:"result"`
	Item           json.RawMessage   `json:"item"`
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

// parseRecords decodes every record of a payload of complete JSON
// records (see splitRecords and parseRecord).
func parseRecords(t *testing.T, payload string) []record {
	t.Helper()
	var out []record
	for _, raw := range splitRecords(t, payload) {
		out = append(out, parseRecord(t, raw))
	}
	return out
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

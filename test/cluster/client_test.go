package cluster

// HTTP helpers for the tests: admin calls, status, REST publishes, cursor
// reads (poll, SSE), sequence comparisons and SignalR WebSockets.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/testkit"
)

// ---- HTTP ----

// trustClusterCA makes the harness's clients trust clusterCA, so they can
// talk HTTPS to nodes started with PeerTLS (before any test runs).
func trustClusterCA() {
	for _, c := range []*http.Client{httpClient, streamClient} {
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: clusterCA.Pool(), MinVersion: tls.VersionTLS12}
	}
}

// httpClient is for short requests; streams use streamClient with a context.
var (
	httpClient = &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	streamClient = &http.Client{
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			DisableKeepAlives: true,
		},
	}
)

// httpResult is a read HTTP answer.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r httpResult) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// do sends one request and reads the whole answer.
func do(method, rawURL string, body []byte, header http.Header) (httpResult, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		return httpResult{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, fmt.Errorf("%s %s: read body: %w", method, rawURL, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// adminHeader carries n's admin token, if it has one.
func (n *node) adminHeader() http.Header {
	h := http.Header{}
	if n.opts.AdminToken != "" {
		h.Set("Authorization", "Bearer "+n.opts.AdminToken)
	}
	return h
}

// adminPost POSTs a JSON body to an admin path of n with n's token.
func adminPost(n *node, path string, body any) (httpResult, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return httpResult{}, err
	}
	return do(http.MethodPost, n.baseURL()+path, b, n.adminHeader())
}

// memberInfo is one member in /admin/status.
type memberInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Suffrage string `json:"suffrage"`
}

// nodeStatus is GET /admin/status, decoded from the wire rather than into
// node.Status: these tests drive the built binary as a black box, so a
// changed JSON name must fail here, and expectedMembers builds the members
// it wants (node's member type is unexported).
type nodeStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Term   uint64 `json:"term"`
	Leader struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	LastIndex    uint64       `json:"last_index"`
	CommitIndex  uint64       `json:"commit_index"`
	AppliedIndex uint64       `json:"applied_index"`
	Members      []memberInfo `json:"members"`
	ClusterLevel uint64       `json:"cluster_level"`
	FeatureLevel uint64       `json:"feature_level"`
	Messages     struct {
		FirstMessage   uint64 `json:"first_message"`
		LastMessage    uint64 `json:"last_message"`
		StoreFileBytes int64  `json:"store_file_bytes"`
	} `json:"messages"`
}

// status reads n's /admin/status.
func status(n *node) (nodeStatus, error) {
	var st nodeStatus
	res, err := do(http.MethodGet, n.baseURL()+"/admin/status", nil, n.adminHeader())
	if err != nil {
		return st, err
	}
	if res.Status != http.StatusOK {
		return st, fmt.Errorf("GET %s/admin/status: %s", n.id, res)
	}
	if err := json.Unmarshal(res.Body, &st); err != nil {
		return st, fmt.Errorf("GET %s/admin/status: %w in %s", n.id, err, res.Body)
	}
	return st, nil
}

// mustStatus is status that fails the test on error.
func mustStatus(t *testing.T, n *node) nodeStatus {
	t.Helper()
	st, err := status(n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sortedMembers returns members sorted by id.
func sortedMembers(ms []memberInfo) []memberInfo {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b memberInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// expectedMembers is what status should list for nodes: voters with the
// addresses from their addresses.json.
func expectedMembers(nodes ...*node) []memberInfo {
	var out []memberInfo
	for _, n := range nodes {
		out = append(out, memberInfo{ID: n.id, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr, Suffrage: "Voter"})
	}
	return sortedMembers(out)
}

// ready reports whether GET /readyz answers 200.
func ready(n *node) (bool, string) {
	res, err := do(http.MethodGet, n.baseURL()+"/readyz", nil, nil)
	if err != nil {
		return false, err.Error()
	}
	return res.Status == http.StatusOK, res.String()
}

// ---- publishing ----

// publishResult is the answer to a REST publish.
type publishResult struct {
	Status    int
	Index     uint64
	Duplicate bool
	Body      string
}

// messageBody is a REST send body {"target": target, "arguments": args}.
func messageBody(target string, args ...any) []byte {
	if args == nil {
		args = []any{}
	}
	b, err := json.Marshal(map[string]any{"target": target, "arguments": args})
	if err != nil {
		panic(err)
	}
	return b
}

// publish POSTs body to /api/v1/hubs/{hub} on n, with an Idempotency-Key
// unless idemKey is empty. A 202 must carry the same index in its body and
// in Backplane-Index, or publish returns an error.
func publish(n *node, hub string, body []byte, idemKey string) (publishResult, error) {
	return publishTo(n, "/api/v1/hubs/"+hub, body, idemKey)
}

// publishTo is publish to any REST send path (groups, users, connections).
func publishTo(n *node, path string, body []byte, idemKey string) (publishResult, error) {
	h := http.Header{}
	if idemKey != "" {
		h.Set("Idempotency-Key", idemKey)
	}
	res, err := do(http.MethodPost, n.baseURL()+path, body, h)
	if err != nil {
		return publishResult{}, err
	}
	pr := publishResult{Status: res.Status, Body: string(bytes.TrimSpace(res.Body)), Duplicate: res.Header.Get("Backplane-Duplicate") == "true"}
	if res.Status != http.StatusAccepted {
		return pr, nil
	}
	var ack struct {
		Index *uint64 `json:"index"`
	}
	if err := json.Unmarshal(res.Body, &ack); err != nil || ack.Index == nil {
		return pr, fmt.Errorf("POST %s on %s: 202 with body %q, want {\"index\": N}", path, n.id, res.Body)
	}
	pr.Index = *ack.Index
	if h := res.Header.Get("Backplane-Index"); h != strconv.FormatUint(pr.Index, 10) {
		return pr, fmt.Errorf("POST %s on %s: body index %d but Backplane-Index %q", path, n.id, pr.Index, h)
	}
	if pr.Index == 0 {
		return pr, fmt.Errorf("POST %s on %s: acknowledged with index 0", path, n.id)
	}
	return pr, nil
}

// mustPublishTo publishes and fails the test unless the answer is 202.
func mustPublishTo(t *testing.T, n *node, path string, body []byte, idemKey string) uint64 {
	t.Helper()
	pr, err := publishTo(n, path, body, idemKey)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Status != http.StatusAccepted {
		t.Fatalf("POST %s on %s: got %d %s, want 202", path, n.id, pr.Status, pr.Body)
	}
	return pr.Index
}

// ---- reading ----

// streamMessage is one message of the native cursor stream.
type streamMessage struct {
	Index     uint64          `json:"index"`
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

func (m streamMessage) String() string {
	return fmt.Sprintf("#%d %s%s", m.Index, m.Target, compactJSON(m.Arguments))
}

// same reports whether two messages have the same index, target and
// arguments (compared as compact JSON).
func (m streamMessage) same(o streamMessage) bool {
	return m.Index == o.Index && m.Target == o.Target && compactJSON(m.Arguments) == compactJSON(o.Arguments)
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// pollResponse is the body of GET /v1/hubs/{hub}/poll.
type pollResponse struct {
	Messages []streamMessage `json:"messages"`
	Next     uint64          `json:"next"`
	Reset    *struct {
		Oldest uint64 `json:"oldest"`
	} `json:"reset"`
}

// poll sends one GET /v1/hubs/{hub}/poll with the given query.
func poll(n *node, hub string, query url.Values) (pollResponse, httpResult, error) {
	var pr pollResponse
	res, err := do(http.MethodGet, n.baseURL()+"/v1/hubs/"+hub+"/poll?"+query.Encode(), nil, nil)
	if err != nil {
		return pr, res, err
	}
	if res.Status != http.StatusOK {
		return pr, res, fmt.Errorf("poll %s on %s: %s", hub, n.id, res)
	}
	if err := json.Unmarshal(res.Body, &pr); err != nil {
		return pr, res, fmt.Errorf("poll %s on %s: %w in %s", hub, n.id, err, res.Body)
	}
	return pr, res, nil
}

// readAll pages through /poll (timeout=0) from after until there is nothing
// more, and returns every message of the hub (broadcasts plus groups). A
// reset is an error.
func readAll(n *node, hub string, after uint64, groups ...string) ([]streamMessage, error) {
	var all []streamMessage
	for {
		q := url.Values{"after": {strconv.FormatUint(after, 10)}, "timeout": {"0"}, "limit": {"1000"}}
		if len(groups) > 0 {
			q["group"] = groups
		}
		pr, _, err := poll(n, hub, q)
		if err != nil {
			return all, err
		}
		if pr.Reset != nil {
			return all, fmt.Errorf("poll %s on %s after %d: unexpected reset to %d", hub, n.id, after, pr.Reset.Oldest)
		}
		if len(pr.Messages) == 0 {
			return all, nil
		}
		if pr.Next <= after {
			return all, fmt.Errorf("poll %s on %s after %d: %d messages but next %d does not advance", hub, n.id, after, len(pr.Messages), pr.Next)
		}
		all = append(all, pr.Messages...)
		after = pr.Next
	}
}

// sameSequence reads all of hub from every node of ns and reports whether
// they serve the same messages; ref is the first node's (why: the first
// difference or read error).
func sameSequence(ns []*node, hub string) (ref []streamMessage, same bool, why string) {
	for i, n := range ns {
		got, err := readAll(n, hub, 0)
		if err != nil {
			return nil, false, err.Error()
		}
		if i == 0 {
			ref = got
			continue
		}
		if d := diffSequences(n.id, got, ns[0].id, ref); d != "" {
			return nil, false, d
		}
	}
	return ref, true, ""
}

// diffSequences describes the first difference between two message
// sequences, or returns "" when they are the same.
func diffSequences(gotName string, got []streamMessage, wantName string, want []streamMessage) string {
	for i := 0; i < min(len(got), len(want)); i++ {
		if !got[i].same(want[i]) {
			return fmt.Sprintf("position %d: %s has %v, %s has %v", i, gotName, got[i], wantName, want[i])
		}
	}
	if len(got) != len(want) {
		var extra []streamMessage
		if len(got) > len(want) {
			extra = got[len(want):]
		} else {
			extra = want[len(got):]
		}
		return fmt.Sprintf("%s has %d messages, %s has %d (first extra: %v)", gotName, len(got), wantName, len(want), extra[0])
	}
	return ""
}

// checkDense fails unless msgs' indexes are first, first+1, ... in order.
func checkDense(t *testing.T, name string, msgs []streamMessage, first uint64) {
	t.Helper()
	for i, m := range msgs {
		if want := first + uint64(i); m.Index != want {
			t.Errorf("%s: position %d has index %d, want %d (indexes must be strictly increasing and dense)", name, i, m.Index, want)
			return
		}
	}
}

// ---- SSE ----

// sseEvent is one Server-Sent Event (or a block of comments and fields).
type sseEvent = testkit.Event

// sseStream is an open SSE connection.
type sseStream struct {
	*testkit.SSEReader
	resp   *http.Response
	cancel context.CancelFunc
}

func (s *sseStream) Close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// openSSE opens GET /v1/hubs/{hub}/stream on n with the given query and
// headers; the stream is closed after timeout at the latest.
func openSSE(t *testing.T, n *node, hub string, query url.Values, header http.Header, timeout time.Duration) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	u := n.baseURL() + "/v1/hubs/" + hub + "/stream"
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := streamClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open SSE %s on %s: %v", u, n.id, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open SSE %s on %s: got %d %s, want 200", u, n.id, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("SSE on %s: Content-Type %q, want text/event-stream", n.id, ct)
	}
	s := &sseStream{SSEReader: testkit.NewSSEReader(resp.Body), resp: resp, cancel: cancel}
	t.Cleanup(s.Close)
	return s
}

// ---- SignalR ----

// negotiateSignalR negotiates a SignalR connection to hub on n with the
// request header h and returns its id and connection token; what names
// the connection in a failure.
func negotiateSignalR(t *testing.T, n *node, hub string, h http.Header, what string) (id, token string) {
	t.Helper()
	res, err := do(http.MethodPost, n.baseURL()+"/hubs/"+hub+"/negotiate?negotiateVersion=1", nil, h)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("negotiate %s on %s: %v %v", what, n.id, res, err)
	}
	var neg struct {
		ConnectionID    string `json:"connectionId"`
		ConnectionToken string `json:"connectionToken"`
	}
	if err := json.Unmarshal(res.Body, &neg); err != nil || neg.ConnectionToken == "" {
		t.Fatalf("negotiate %s on %s: %s: %v", what, n.id, res.Body, err)
	}
	return neg.ConnectionID, neg.ConnectionToken
}

// signalRHandshake opens a SignalR WebSocket at u with d and completes its
// JSON handshake (the server's answer within 10 s); what names the socket
// in a failure. The socket is closed when the test ends.
func signalRHandshake(t *testing.T, d *websocket.Dialer, u, what string) *websocket.Conn {
	t.Helper()
	conn := testkit.DialWS(t, d, u, nil, what)
	if err := conn.WriteMessage(websocket.TextMessage, []byte("{\"protocol\":\"json\",\"version\":1}\x1e")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := conn.ReadMessage(); err != nil || string(data) != "{}\x1e" {
		t.Fatalf("SignalR handshake of %s: %q, %v", what, data, err)
	}
	return conn
}

package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// seen is one request the test upstream received.
type seen struct {
	path   string
	header http.Header
	body   []byte
}

// fakeUpstream is an httptest server on 127.0.0.1 that records requests
// and answers with answer.
type fakeUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []seen
	answer func(w http.ResponseWriter, r *http.Request, body []byte)
}

func newFakeUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{answer: answer}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{path: r.URL.RequestURI(), header: r.Header.Clone(), body: body})
		f.mu.Unlock()
		f.answer(w, r, body)
	})}}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// waitRequests polls until the upstream has n requests or fails.
func (f *fakeUpstream) waitRequests(t *testing.T, n int) []seen {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := f.requests(); len(r) >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream got %d requests, want %d", len(f.requests()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestUpstream(t *testing.T, cfg Config) *Upstream {
	t.Helper()
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

func testConn() signalr.ConnInfo {
	return signalr.ConnInfo{
		Hub: "chat", ID: "conn-1", UserID: "alice",
		Claims:   []signalr.Claim{{Type: "sub", Value: "alice"}, {Type: "role", Value: "admin"}},
		Query:    url.Values{"room": {"blue"}},
		Protocol: "json",
	}
}

func hexHMAC(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func jsonCall(c signalr.ConnInfo, id, target string, args ...string) *signalr.Call {
	m := &hubproto.Message{Type: hubproto.Invocation, InvocationID: id, Target: target}
	for _, a := range args {
		m.Arguments = append(m.Arguments, hubproto.JSONValue([]byte(a)))
	}
	return &signalr.Call{Conn: c, Message: m, Protocol: hubproto.JSON{}}
}

func TestInvokeSendsAzureHeadersSignatureAndBodyAndReturnsTheResult(t *testing.T) {
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{\"type\":3,\"invocationId\":\"7\",\"result\":{\"sum\":3}}\x1e")
	})
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/api/{hub}/{category}/{event}?code=k"}}, Keys: []string{"primary", "secondary"}})
	comp := u.Invoke(context.Background(), jsonCall(testConn(), "7", "Add", "1", "2"))
	if comp.Error != "" || comp.Unknown || !comp.HasResult || string(comp.Result.Data) != `{"sum":3}` || comp.Result.Format != hubproto.FormatJSON {
		t.Fatalf("completion %+v (result %q)", comp, comp.Result.Data)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.path != "/api/chat/messages/Add?code=k" {
		t.Errorf("path %q", r.path)
	}
	want := map[string]string{
		"Content-Type":         "application/json",
		"X-Asrs-Connection-Id": "conn-1",
		"X-Asrs-Hub":           "chat",
		"X-Asrs-Category":      "messages",
		"X-Asrs-Event":         "Add",
		"X-Asrs-User-Id":       "alice",
		"X-Asrs-User-Claims":   "sub: alice, role: admin",
		"X-Asrs-Client-Query":  "?room=blue",
		"X-Asrs-Signature":     "sha256=" + hexHMAC("primary", "conn-1") + ",sha256=" + hexHMAC("secondary", "conn-1"),
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if string(r.body) != `{"type":1,"invocationId":"7","target":"Add","arguments":[1,2]}` {
		t.Errorf("body %q: want the unframed JSON invocation", r.body)
	}
}

func TestInvokeMessagePackBodyAndCompletion(t *testing.T) {
	var ct string
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		ct = r.Header.Get("Content-Type")
		ans, err := hubproto.MessagePack{}.Append(nil, &hubproto.Message{Type: hubproto.Completion, InvocationID: "1",
			Result: hubproto.MsgpackValue([]byte{0xa2, 'o', 'k'}), HasResult: true})
		if err != nil {
			t.Error(err)
		}
		w.Write(ans)
	})
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/{event}"}}})
	c := testConn()
	c.Protocol = "messagepack"
	m := &hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "Echo", Arguments: []hubproto.RawValue{hubproto.MsgpackValue([]byte{0x05})}}
	comp := u.Invoke(context.Background(), &signalr.Call{Conn: c, Message: m, Protocol: hubproto.MessagePack{}})
	if comp.Error != "" || !comp.HasResult || !bytes.Equal(comp.Result.Data, []byte{0xa2, 'o', 'k'}) {
		t.Fatalf("completion %+v", comp)
	}
	r := f.requests()[0]
	if ct != "application/x-msgpack" {
		t.Errorf("content type %q", ct)
	}
	// [1, {}, "1", "Echo", [5], []] without the varint length prefix.
	want := []byte{0x96, 0x01, 0x80, 0xa1, '1', 0xa4, 'E', 'c', 'h', 'o', 0x91, 0x05, 0x90}
	if !bytes.Equal(r.body, want) {
		t.Errorf("body % x, want % x", r.body, want)
	}
	msgs, _, err := hubproto.MessagePack{}.Parse(append([]byte{byte(len(r.body))}, r.body...), 0)
	if err != nil || len(msgs) != 1 || msgs[0].Target != "Echo" {
		t.Errorf("the body does not parse as an invocation once framed: %v %+v", err, msgs)
	}
}

func TestInvokeAnswers(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		id     string
		check  func(signalr.Completion) bool
	}{
		{"empty 200 is a void completion", 200, "", "1", func(c signalr.Completion) bool { return c.Error == "" && !c.HasResult }},
		{"204 is a void completion", 204, "", "1", func(c signalr.Completion) bool { return c.Error == "" && !c.HasResult }},
		{"an error completion", 200, "{\"type\":3,\"invocationId\":\"1\",\"error\":\"boom\"}\x1e", "1", func(c signalr.Completion) bool { return c.Error == "boom" }},
		{"unframed JSON is accepted", 200, `{"type":3,"invocationId":"1","result":null}`, "1", func(c signalr.Completion) bool { return c.HasResult && string(c.Result.Data) == "null" }},
		{"non-2xx", 500, "oops", "1", func(c signalr.Completion) bool { return c.Error == "Invocation failed, status code 500" }},
		{"404", 404, "", "1", func(c signalr.Completion) bool { return c.Error == "Invocation failed, status code 404" }},
		{"not a completion", 200, "{\"type\":1,\"target\":\"x\",\"arguments\":[]}\x1e", "1", func(c signalr.Completion) bool { return strings.Contains(c.Error, "not a completion") }},
		{"garbage", 200, "<html>", "1", func(c signalr.Completion) bool { return strings.Contains(c.Error, "not a completion") }},
		{"a send ignores the body", 200, "whatever", "", func(c signalr.Completion) bool { return c.Error == "" && !c.HasResult }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL}}})
			if c := u.Invoke(context.Background(), jsonCall(testConn(), tc.id, "M")); !tc.check(c) {
				t.Fatalf("completion %+v (result %q)", c, c.Result.Data)
			}
		})
	}
}

func TestInvokeTimeoutAndTooLargeAnswers(t *testing.T) {
	release := make(chan struct{})
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write(bytes.Repeat([]byte("x"), 2048))
	})
	defer close(release)
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/{event}"}}, Timeout: 200 * time.Millisecond, MaxAnswer: 1024})
	start := time.Now()
	c := u.Invoke(context.Background(), jsonCall(testConn(), "1", "slow"))
	if !strings.Contains(c.Error, "did not answer within 200ms") {
		t.Fatalf("timeout: %+v", c)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the timeout took %s", d)
	}
	if c := u.Invoke(context.Background(), jsonCall(testConn(), "2", "big")); !strings.Contains(c.Error, "larger than 1024 bytes") {
		t.Fatalf("large answer: %+v", c)
	}
}

func TestRulesFirstMatchWinsAndUnmatchedInvocationsFail(t *testing.T) {
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) { w.WriteHeader(200) })
	u := newTestUpstream(t, Config{Rules: []Rule{
		{URL: f.srv.URL + "/special/{event}", Hub: "chat, news", Category: "messages", Event: "Add,Sub"},
		{URL: f.srv.URL + "/chat/{category}/{event}", Hub: "chat"},
		{URL: f.srv.URL + "/conn/{hub}", Category: "connections", Event: "*"},
	}})
	c := testConn()
	u.Invoke(context.Background(), jsonCall(c, "1", "Add"))
	u.Invoke(context.Background(), jsonCall(c, "2", "Mul"))
	news := c
	news.Hub = "news"
	u.Invoke(context.Background(), jsonCall(news, "3", "Sub"))
	other := c
	other.Hub = "other hub"
	if comp := u.Invoke(context.Background(), jsonCall(other, "4", "Add")); !strings.Contains(comp.Error, "no upstream is configured") {
		t.Fatalf("unmatched: %+v", comp)
	}
	u.Connected(other)
	reqs := f.waitRequests(t, 4)
	got := []string{}
	for _, r := range reqs {
		got = append(got, r.path)
	}
	want := []string{"/special/Add", "/chat/messages/Mul", "/special/Sub", "/conn/other%20hub"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("paths %q, want %q", got, want)
	}
}

func TestStreamsAreRefused(t *testing.T) {
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: "http://127.0.0.1:1/"}}})
	call := jsonCall(testConn(), "1", "Counter")
	call.Message.Type = hubproto.StreamInvocation
	if c := u.Invoke(context.Background(), call); !strings.Contains(c.Error, "not supported") {
		t.Fatalf("stream invocation: %+v", c)
	}
	call = jsonCall(testConn(), "2", "Upload")
	call.Message.StreamIDs = []string{"s1"}
	if c := u.Invoke(context.Background(), call); !strings.Contains(c.Error, "not supported") {
		t.Fatalf("upload: %+v", c)
	}
}

func TestConnectEvent(t *testing.T) {
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.Contains(string(body), `"room":"closed"`) {
			w.WriteHeader(403)
			io.WriteString(w, "room closed")
			return
		}
		if strings.Contains(string(body), `"room":"broken"`) {
			w.WriteHeader(502)
			return
		}
		io.WriteString(w, `{"userId":"bob","groups":["blue","green"]}`)
	})
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/{category}/{event}"}}, ConnectEvent: true})
	c := testConn()
	c.Protocol = ""
	adm, err := u.Connect(context.Background(), &c)
	if err != nil || adm.UserID != "bob" || strings.Join(adm.Groups, ",") != "blue,green" {
		t.Fatalf("admission %+v, %v", adm, err)
	}
	r := f.requests()[0]
	if r.path != "/connections/connect" || r.header.Get("X-Asrs-Event") != "connect" || !strings.Contains(string(r.body), `"userId":"alice"`) {
		t.Fatalf("request %q %q %q", r.path, r.header, r.body)
	}
	c.Query = url.Values{"room": {"closed"}}
	_, err = u.Connect(context.Background(), &c)
	var ref *signalr.Refusal
	if !errors.As(err, &ref) || ref.Status != 403 || ref.Message != "room closed" {
		t.Fatalf("refusal: %v", err)
	}
	c.Query = url.Values{"room": {"broken"}}
	if _, err = u.Connect(context.Background(), &c); err == nil || errors.As(err, &ref) {
		t.Fatalf("a 502 must be an error that is not a refusal: %v", err)
	}
	off := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL}}})
	n := len(f.requests())
	if adm, err := off.Connect(context.Background(), &c); err != nil || adm.UserID != "" || len(f.requests()) != n {
		t.Fatalf("without ConnectEvent Connect must admit without a request: %+v %v", adm, err)
	}
}

func TestParseRule(t *testing.T) {
	r, err := ParseRule("hub=chat,news;event=Add;http://127.0.0.1:8080/{hub}/{event};x")
	if err != nil || r.Hub != "chat,news" || r.Event != "Add" || r.Category != "" || r.URL != "http://127.0.0.1:8080/{hub}/{event};x" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRule("http://127.0.0.1:7071/runtime/webhooks/signalr?code=a=b")
	if err != nil || r.URL != "http://127.0.0.1:7071/runtime/webhooks/signalr?code=a=b" || r.Hub != "" {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "hub=chat", "hub=a;hub=b;http://127.0.0.1/", "/relative/{hub}", "ftp://127.0.0.1/x", "hub=a,,b;http://127.0.0.1/"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
	var l ListFlag
	l.Set("a")
	l.Set("b\n\nc")
	if strings.Join(l, "|") != "a|b|c" {
		t.Fatalf("ListFlag %q", l)
	}
}

func TestTransportErrorsDoNotShowTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the POST fails to connect
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: "http://" + addr + "/hook?code=very-secret"}}})
	c := u.Invoke(context.Background(), jsonCall(testConn(), "1", "Add"))
	if !strings.HasPrefix(c.Error, "Invocation failed: upstream POST messages/Add: ") || strings.Contains(c.Error, "very-secret") {
		t.Fatalf("error completion %q: want the failure without the URL's secret", c.Error)
	}
}

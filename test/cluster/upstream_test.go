package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backplane/backplane/transport/hubproto"
)

// testUpstream is the upstream webhook of TestUpstreamWebhooks: it checks
// every request's signature and headers, records connection events, and
// answers the methods test/signalr/upstream.test.mjs calls.
type testUpstream struct {
	mu       sync.Mutex
	problems []string
	events   map[string][]string // connection id → "connected", "disconnected:<error>"
	seq      map[string][]int
}

func (u *testUpstream) problem(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.problems = append(u.problems, fmt.Sprintf(format, args...))
}

func (u *testUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn := r.Header.Get("X-ASRS-Connection-Id")
	sig := func(key string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(conn))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	if got, want := r.Header.Get("X-ASRS-Signature"), sig("key-one")+","+sig("key-two"); got != want {
		u.problem("signature %q, want %q", got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	category, event := r.Header.Get("X-ASRS-Category"), r.Header.Get("X-ASRS-Event")
	if r.Header.Get("X-ASRS-Hub") != "chat" || conn == "" {
		u.problem("headers %v", r.Header)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" && !(category == "messages" && ct == "application/x-msgpack") {
		u.problem("Content-Type %q for %s/%s", ct, category, event)
	}
	// A disconnected event from the node that expired a dead holder's
	// connection knows only its hub, id and user (signalr.ConnInfo).
	user := r.Header.Get("X-ASRS-User-Id")
	expired := r.Header.Get("X-ASRS-Event") == "disconnected" && r.Header.Get("X-ASRS-User-Claims") == ""
	if user == "" || !expired && !strings.Contains(r.Header.Get("X-ASRS-User-Claims"), "nameid: "+user) {
		u.problem("user %q, claims %q", user, r.Header.Get("X-ASRS-User-Claims"))
	}
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/api/chat/"+category+"/"+event {
		u.problem("path %q for %s/%s", r.URL.Path, category, event)
	}
	if category == "connections" {
		var ev struct {
			Type  int    `json:"type"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			u.problem("connection event body %q: %v", body, err)
		}
		u.mu.Lock()
		if event == "disconnected" {
			event += ":" + ev.Error
		}
		u.events[conn] = append(u.events[conn], event)
		u.mu.Unlock()
		return
	}
	if r.Header.Get("Content-Type") == "application/x-msgpack" {
		u.serveMsgpack(w, body, event)
		return
	}
	var inv struct {
		InvocationID string            `json:"invocationId"`
		Target       string            `json:"target"`
		Arguments    []json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(body, &inv); err != nil || inv.Target != event || body[len(body)-1] == 0x1e {
		u.problem("invocation body %q: %v", body, err)
	}
	answer := map[string]any{"type": 3, "invocationId": inv.InvocationID}
	switch event {
	case "Add":
		var a, b int
		json.Unmarshal(inv.Arguments[0], &a)
		json.Unmarshal(inv.Arguments[1], &b)
		answer["result"] = a + b
	case "Fail":
		answer["error"] = "nope from the upstream"
	case "Status500":
		w.WriteHeader(http.StatusInternalServerError)
		return
	case "Seq":
		var i int
		json.Unmarshal(inv.Arguments[0], &i)
		u.mu.Lock()
		u.seq[conn] = append(u.seq[conn], i)
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case "SeqLog":
		u.mu.Lock()
		answer["result"] = u.seq[conn]
		u.mu.Unlock()
	}
	out, _ := json.Marshal(answer)
	w.Write(append(out, 0x1e))
}

// TestUpstreamWebhooks runs test/signalr/upstream.test.mjs against three
// nodes of the built binary whose -upstream is an HTTP server in this test
// (signed with two -upstream-key values): results (JSON and MessagePack
// clients, each body in its own protocol), error completions and
// error statuses reach the official client, one connection's invocations
// arrive in order, and a connection whose node is killed with SIGKILL gets
// connections/disconnected from the node that expires it.
func TestUpstreamWebhooks(t *testing.T) {
	dir := moduleDir(t, "test/signalr")
	ensureNodeModules(t, dir)
	up := &testUpstream{events: map[string][]string{}, seq: map[string][]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: up}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	nodes := startCluster(t, 3, nodeOptions{ExtraArgs: []string{
		"-access-key", signalrAccessKey, "-holder-timeout", "3s",
		"-upstream", "hub=chat;http://" + ln.Addr().String() + "/api/{hub}/{category}/{event}",
		"-upstream-key", "key-one", "-upstream-key", "key-two",
	}})
	out := runNodeSuite(t, dir, nodes, 2*time.Minute, "upstream.test.mjs")
	t.Log(out)
	m := regexp.MustCompile(`killed-conn (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the script printed no killed connection:\n%s", out)
	}
	killed := m[1]
	waitFor(t, 30*time.Second, "connections/disconnected of the killed node's connection", func() (bool, string) {
		up.mu.Lock()
		defer up.mu.Unlock()
		ev := up.events[killed]
		return len(ev) >= 2 && strings.HasPrefix(ev[len(ev)-1], "disconnected"), strings.Join(ev, " ")
	})
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.problems) > 0 {
		t.Fatalf("the upstream saw bad requests:\n%s", strings.Join(up.problems, "\n"))
	}
	if ev := up.events[killed]; ev[0] != "connected" {
		t.Fatalf("events of the killed connection %q: want connected first", ev)
	}
	// Every connection of the script was connected and then disconnected.
	for id, ev := range up.events {
		if len(ev) != 2 || ev[0] != "connected" || !strings.HasPrefix(ev[1], "disconnected") {
			t.Errorf("connection %s: events %q, want connected then disconnected once each", id, ev)
		}
	}
}

// serveMsgpack answers a MessagePack client's Add: the body is the
// unframed invocation, the answer a framed MessagePack completion.
func (u *testUpstream) serveMsgpack(w http.ResponseWriter, body []byte, event string) {
	var framed []byte
	for n := len(body); ; n >>= 7 { // varint length prefix
		if n < 0x80 {
			framed = append(framed, byte(n))
			break
		}
		framed = append(framed, byte(n)|0x80)
	}
	msgs, _, err := hubproto.MessagePack{}.Parse(append(framed, body...), 0)
	if err != nil || len(msgs) != 1 || msgs[0].Target != event || event != "Add" || len(msgs[0].Arguments) != 2 {
		u.problem("messagepack invocation % x: %v %+v", body, err, msgs)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var sum int
	for _, a := range msgs[0].Arguments {
		j, err := a.AppendJSON(nil)
		var v int
		if err != nil || json.Unmarshal(j, &v) != nil {
			u.problem("messagepack argument % x", a.Data)
		}
		sum += v
	}
	res, _ := hubproto.JSONValue([]byte(strconv.Itoa(sum))).AppendMsgpack(nil)
	out, err := hubproto.MessagePack{}.Append(nil, &hubproto.Message{Type: hubproto.Completion, InvocationID: msgs[0].InvocationID,
		Result: hubproto.MsgpackValue(res), HasResult: true})
	if err != nil {
		u.problem("encoding the answer: %v", err)
	}
	w.Header().Set("Content-Type", "application/x-msgpack")
	w.Write(out)
}

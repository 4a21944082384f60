package node

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/internal/testkit"
)

// heldConnID waits until n holds exactly one connection of hub and
// returns its id.
func heldConnID(t *testing.T, n *testNode, hub string) string {
	t.Helper()
	var id string
	testkit.WaitFor(t, 10*time.Second, "the connection's record", func() (bool, string) {
		conns, err := n.fsm.ConnectionsOn(n.ID())
		if err != nil {
			return false, err.Error()
		}
		for _, c := range conns {
			if c.Hub == hub {
				id = c.ConnID
				return true, ""
			}
		}
		return false, "no connection yet"
	})
	return id
}

// write sends one JSON hub message.
func (c *hubClient) write(msg map[string]any) {
	c.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, append(b, recordSeparator...)); err != nil {
		c.t.Fatal(err)
	}
}

// nextInvocation returns the next Invocation with an invocation id.
func (c *hubClient) nextInvocation(target string) map[string]any {
	c.t.Helper()
	for {
		rec := c.next()
		if rec["type"] == float64(1) && rec["target"] == target {
			if id, _ := rec["invocationId"].(string); id == "" {
				c.t.Fatalf("invocation of %s without an invocation id: %v", target, rec)
			}
			return rec
		}
	}
}

// :invoke sent to a node that does not hold the connection reaches the
// client on its holder as an Invocation with an id, and answers with the
// client's result; a client error is a 400 with the client's text, and a
// client that does not answer in time is a 408. A Completion with an id
// the server is not waiting for changes nothing.
func TestInvokeClientOverREST(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	holder, other := c.nodes[0], c.nodes[1]
	client := dialHub(t, holder, "chat", "")
	id := heldConnID(t, holder, "chat")
	url := other.apiURL("/api/hubs/chat/connections/"+id+"/:invoke", apiVersion20241201)

	call := func(url string, body string) <-chan httpResult {
		ch := make(chan httpResult, 1)
		go func() { ch <- doHTTP(t, http.MethodPost, url, []byte(body), nil) }()
		return ch
	}

	// A result.
	done := call(url, `{"target":"add","arguments":[2,3]}`)
	inv := client.nextInvocation("add")
	if args, _ := json.Marshal(inv["arguments"]); string(args) != "[2,3]" {
		t.Fatalf("arguments: got %s, want [2,3]", args)
	}
	client.write(map[string]any{"type": 3, "invocationId": "not-" + inv["invocationId"].(string), "result": 99}) // nobody waits for it
	client.write(map[string]any{"type": 3, "invocationId": inv["invocationId"], "result": map[string]any{"sum": 5}})
	res := <-done
	if res.status != http.StatusOK {
		t.Fatalf(":invoke: %d %s", res.status, res.body)
	}
	var body struct{ Result json.RawMessage }
	if err := json.Unmarshal(res.body, &body); err != nil || string(body.Result) != `{"sum":5}` {
		t.Fatalf(":invoke body: %s (%v), want {\"result\":{\"sum\":5}}", res.body, err)
	}

	// A void completion is a null result.
	done = call(url, `{"target":"ping"}`)
	inv = client.nextInvocation("ping")
	client.write(map[string]any{"type": 3, "invocationId": inv["invocationId"]})
	if res := <-done; res.status != http.StatusOK || string(res.body) != `{"result":null}` {
		t.Fatalf("void :invoke: %d %s", res.status, res.body)
	}

	// The client's error.
	done = call(url, `{"target":"fail","arguments":[]}`)
	inv = client.nextInvocation("fail")
	client.write(map[string]any{"type": 3, "invocationId": inv["invocationId"], "error": "handler threw: nope"})
	wantError(t, "client error", <-done, http.StatusBadRequest, "ClientInvocationError", "handler threw: nope")

	// No answer in time.
	start := time.Now()
	done = call(other.apiURL("/api/hubs/chat/connections/"+id+"/:invoke", apiVersion20241201, "timeout=1"), `{"target":"silent"}`)
	client.nextInvocation("silent")
	wantError(t, "timeout", <-done, http.StatusRequestTimeout, "RequestTimeout", "did not answer")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the 1 s timeout took %s", d)
	}

	// On the holder itself, too.
	done = call(holder.apiURL("/api/hubs/chat/connections/"+id+"/:invoke", apiVersion20241201), `{"target":"echo","arguments":["x"]}`)
	inv = client.nextInvocation("echo")
	client.write(map[string]any{"type": 3, "invocationId": inv["invocationId"], "result": "x"})
	if res := <-done; res.status != http.StatusOK || string(res.body) != `{"result":"x"}` {
		t.Fatalf("holder :invoke: %d %s", res.status, res.body)
	}

	// Bad calls change nothing and reach no client.
	wantError(t, "no target", doHTTP(t, http.MethodPost, url, []byte(`{"arguments":[]}`), nil), http.StatusBadRequest, "BadRequest", "target")
	wantError(t, "bad timeout", doHTTP(t, http.MethodPost, url+"&timeout=0", []byte(`{"target":"x"}`), nil), http.StatusBadRequest, "BadRequest", "timeout")
	wantError(t, "args not an array", doHTTP(t, http.MethodPost, url, []byte(`{"target":"x","arguments":1}`), nil), http.StatusBadRequest, "BadRequest", "arguments")
	wantError(t, "2022-06-01", doHTTP(t, http.MethodPost, other.apiURL("/api/hubs/chat/connections/"+id+"/:invoke", apiVersion20220601), []byte(`{"target":"x"}`), nil),
		http.StatusBadRequest, "UnsupportedApiVersion", "does not define")
	wantError(t, "other hub", doHTTP(t, http.MethodPost, other.apiURL("/api/hubs/news/connections/"+id+"/:invoke", apiVersion20241201), []byte(`{"target":"x"}`), nil),
		http.StatusNotFound, "NotFound", "not connected")

	// A connection that closes while the caller waits.
	done = call(url, `{"target":"bye"}`)
	client.nextInvocation("bye")
	_ = client.ws.Close()
	wantError(t, "closed while waiting", <-done, http.StatusNotFound, "ConnectionClosed", "closed before the client answered")
}

// Stream items sent through any node reach the connection in order, then
// the Completion of the stream: :complete with a reason is an error
// Completion, completed=true ends the stream after its item.
func TestStreamToClientOverREST(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 3})
	holder := c.nodes[2]
	client := dialHub(t, holder, "chat", "")
	id := heldConnID(t, holder, "chat")
	base := "/api/hubs/chat/connections/" + id + "/streams/"
	for i := 0; i < 5; i++ {
		n := c.nodes[i%2] // never the holder
		item, _ := json.Marshal(map[string]int{"n": i})
		if res := doHTTP(t, http.MethodPost, n.apiURL(base+"s1/:send", apiVersion20241201), item, nil); res.status != http.StatusAccepted {
			t.Fatalf("item %d: %d %s", i, res.status, res.body)
		}
	}
	if res := doHTTP(t, http.MethodPost, c.nodes[0].apiURL(base+"s1/:complete", apiVersion20241201), nil, nil); res.status != http.StatusAccepted {
		t.Fatalf(":complete: %d %s", res.status, res.body)
	}
	for i := 0; i < 5; i++ {
		got := client.next()
		item, _ := json.Marshal(got["item"])
		if got["type"] != float64(2) || got["invocationId"] != "s1" || string(item) != `{"n":`+string(rune('0'+i))+`}` {
			t.Fatalf("stream record %d: got %v, want item {\"n\":%d} of s1", i, got, i)
		}
	}
	if got := client.next(); got["type"] != float64(3) || got["invocationId"] != "s1" || got["error"] != nil {
		t.Fatalf("stream end: got %v, want a Completion of s1 without error", got)
	}

	doHTTP(t, http.MethodPost, c.nodes[1].apiURL(base+"s2/:complete", apiVersion20241201, "reason=backend+gave+up"), nil, nil)
	if got := client.next(); got["type"] != float64(3) || got["invocationId"] != "s2" || got["error"] != "backend gave up" {
		t.Fatalf("stream error end: got %v", got)
	}
	if res := doHTTP(t, http.MethodPost, c.nodes[1].apiURL(base+"s3/:send", apiVersion20241201, "completed=true"), []byte(`"last"`), nil); res.status != http.StatusAccepted {
		t.Fatalf("completed=true: %d %s", res.status, res.body)
	}
	if got := client.next(); got["type"] != float64(2) || got["invocationId"] != "s3" || got["item"] != "last" {
		t.Fatalf("last item: got %v", got)
	}
	if got := client.next(); got["type"] != float64(3) || got["invocationId"] != "s3" {
		t.Fatalf("completed=true end: got %v", got)
	}

	wantError(t, "not JSON", doHTTP(t, http.MethodPost, c.nodes[0].apiURL(base+"s4/:send", apiVersion20241201), []byte(`{nope`), nil),
		http.StatusBadRequest, "BadRequest", "one JSON value")
	wantError(t, "bad completed", doHTTP(t, http.MethodPost, c.nodes[0].apiURL(base+"s4/:send", apiVersion20241201, "completed=maybe"), []byte(`1`), nil),
		http.StatusBadRequest, "BadRequest", "completed")
	wantError(t, "unknown connection", doHTTP(t, http.MethodPost, c.nodes[0].apiURL("/api/hubs/chat/connections/nope/streams/s/:send", apiVersion20241201), []byte(`1`), nil),
		http.StatusNotFound, "NotFound", "not connected")
}

// The node-to-node route takes members only, and rejects a malformed call
// with 400 without touching any connection.
func TestClientCallRouteChecksItsInput(t *testing.T) {
	c := startCluster(t, clusterOptions{size: 1})
	n := c.nodes[0]
	for _, body := range []string{`{`, `{"op":"invoke","hub":"1bad"}`, `{"op":"what","hub":"chat","connectionId":"c"}`,
		`{"op":"invoke","hub":"chat","connectionId":"c"}`, `{"op":"stream-item","hub":"chat","connectionId":"c","item":1}`, `{"op":"invoke","hub":"chat","target":"t"}`} {
		res := doHTTP(t, http.MethodPost, n.url(clientCallPath), []byte(body), nil)
		if res.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s, want 400", body, res.status, res.body)
		}
	}
	res := doHTTP(t, http.MethodPost, n.url(clientCallPath), []byte(`{"op":"invoke","hub":"chat","connectionId":"c","target":"t"}`), nil)
	if res.status != http.StatusNotFound {
		t.Fatalf("invoke of no connection: %d %s, want 404", res.status, res.body)
	}
}

package cluster

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBadInputChangesNothing sends malformed, oversized and misaddressed
// requests to one node: each gets its 4xx status, and the message log does
// not move.
func TestBadInputChangesNothing(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1"})
	waitFor(t, 15*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
	first := mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("hello", "world"), "")
	before := mustStatus(t, n).Messages.LastMessage
	if before != first {
		t.Fatalf("after one publish: last_message %d, want %d", before, first)
	}

	longGroup := strings.Repeat("g", 1025)
	okGroup := strings.Repeat("g", 1024)
	big := `{"target":"t","arguments":["` + strings.Repeat("x", 1<<20) + `"]}`
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		want   int
	}{
		{"malformed JSON", "POST", "/api/v1/hubs/chat", `{"target": "t", "arguments": [1,`, http.StatusBadRequest},
		{"not JSON at all", "POST", "/api/v1/hubs/chat", `hello`, http.StatusBadRequest},
		{"arguments an object", "POST", "/api/v1/hubs/chat", `{"target":"t","arguments":{"a":1}}`, http.StatusBadRequest},
		{"arguments a string", "POST", "/api/v1/hubs/chat", `{"target":"t","arguments":"x"}`, http.StatusBadRequest},
		{"arguments a number", "POST", "/api/v1/hubs/chat", `{"target":"t","arguments":1}`, http.StatusBadRequest},
		{"body over 1 MiB", "POST", "/api/v1/hubs/chat", big, http.StatusRequestEntityTooLarge},
		{"hub starting with a digit", "POST", "/api/v1/hubs/9abc", `{"target":"t","arguments":[]}`, http.StatusBadRequest},
		{"hub with a dot", "POST", "/api/v1/hubs/a.b", `{"target":"t","arguments":[]}`, http.StatusBadRequest},
		{"hub starting with a dash", "POST", "/api/v1/hubs/-ab", `{"target":"t","arguments":[]}`, http.StatusBadRequest},
		{"hub of 129 characters", "POST", "/api/v1/hubs/" + strings.Repeat("h", 129), `{"target":"t","arguments":[]}`, http.StatusBadRequest},
		{"group of 1025 characters", "POST", "/api/v1/hubs/chat/groups/" + longGroup, `{"target":"t","arguments":[]}`, http.StatusBadRequest},
		{"group of 1025 characters, malformed body", "POST", "/api/v1/hubs/chat/groups/" + longGroup, `{`, http.StatusBadRequest},
		{"stream of a bad hub", "GET", "/v1/hubs/9abc/poll?after=0&timeout=0", "", http.StatusBadRequest},
		{"stream of a group of 1025 characters", "GET", "/v1/hubs/chat/poll?" + url.Values{"after": {"0"}, "timeout": {"0"}, "group": {longGroup}}.Encode(), "", http.StatusBadRequest},
		{"SSE of a group of 1025 characters", "GET", "/v1/hubs/chat/stream?" + url.Values{"after": {"0"}, "group": {longGroup}}.Encode(), "", http.StatusBadRequest},
		{"cursor not a number", "GET", "/v1/hubs/chat/poll?after=abc&timeout=0", "", http.StatusBadRequest},
		{"poll timeout over 90s", "GET", "/v1/hubs/chat/poll?after=0&timeout=91", "", http.StatusBadRequest},
		{"poll limit 0", "GET", "/v1/hubs/chat/poll?after=0&limit=0", "", http.StatusBadRequest},
		{"unknown path", "GET", "/api/v2/nothing/here", "", http.StatusNotFound},
		{"unknown POST path", "POST", "/api/v1/hubz/chat", `{"target":"t","arguments":[]}`, http.StatusNotFound},
		{"unknown stream kind", "GET", "/v1/hubs/chat/firehose", "", http.StatusNotFound},
		// Within the limits: accepted, and it publishes nothing.
		{"stream of a group of 1024 characters", "GET", "/v1/hubs/chat/poll?" + url.Values{"after": {"0"}, "timeout": {"0"}, "group": {okGroup}}.Encode(), "", http.StatusOK},
	}
	res, err := do("POST", n.baseURL()+"/api/v1/hubs/chat", messageBody("t"), http.Header{"Idempotency-Key": {strings.Repeat("k", 257)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusBadRequest {
		t.Errorf("Idempotency-Key of 257 bytes: got %.300s, want 400", res)
	}
	for _, c := range cases {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		res, err := do(c.method, n.baseURL()+c.path, body, nil)
		if err != nil {
			t.Errorf("%s: %s %.80s: %v", c.name, c.method, c.path, err)
			continue
		}
		if res.Status != c.want {
			t.Errorf("%s: %s %.80s: got %.300s, want %d", c.name, c.method, c.path, res, c.want)
		}
		if c.want >= 400 && !strings.Contains(string(res.Body), `"error"`) {
			t.Errorf("%s: body %.200q, want a JSON {\"error\": ...} explanation", c.name, res.Body)
		}
	}

	st := mustStatus(t, n)
	if st.Messages.LastMessage != before {
		t.Errorf("after the bad requests: last_message %d, want it unchanged at %d", st.Messages.LastMessage, before)
	}
	msgs, err := readAll(n, "chat", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []streamMessage{{Index: first, Target: "hello", Arguments: []byte(`["world"]`)}}
	if d := diffSequences("chat", msgs, "the one good publish", want); d != "" {
		t.Errorf("after the bad requests: %s", d)
	}
	// The node still takes good input, at the next index.
	if idx := mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("hello", "again"), ""); idx != before+1 {
		t.Errorf("publish after the bad requests: index %d, want %d", idx, before+1)
	}
}

// Command upstream is a minimal Backplane (or Azure SignalR serverless)
// upstream: it checks X-ASRS-Signature, logs connections/connected and
// connections/disconnected, and answers the hub methods Echo and Add for
// JSON clients. Run a cluster with
//
//	backplane -upstream 'http://127.0.0.1:8090/{hub}/{category}/{event}' -upstream-key secret
//
// and this with -addr 127.0.0.1:8090 -key secret. See docs/upstream.md.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address (port 0 picks one)")
	key := flag.String("key", "", "the cluster's -upstream-key (empty: no signature check)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("upstream listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, handler(*key)))
}

// signed reports whether one of the request's signatures is ours.
func signed(r *http.Request, key string) bool {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(r.Header.Get("X-ASRS-Connection-Id")))
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	for _, s := range strings.Split(r.Header.Get("X-ASRS-Signature"), ",") {
		if hmac.Equal([]byte(strings.ToLower(s)), []byte(want)) {
			return true
		}
	}
	return false
}

func handler(key string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key != "" && !signed(r, key) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		conn, event := r.Header.Get("X-ASRS-Connection-Id"), r.Header.Get("X-ASRS-Event")
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Header.Get("X-ASRS-Category") == "connections" {
			log.Printf("%s %s %s", event, conn, body) // connected or disconnected
			return
		}
		var inv struct {
			InvocationID string            `json:"invocationId"`
			Arguments    []json.RawMessage `json:"arguments"`
		}
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &inv) != nil {
			http.Error(w, "JSON invocations only", http.StatusUnsupportedMediaType)
			return
		}
		answer := map[string]any{"type": 3, "invocationId": inv.InvocationID}
		switch {
		case event == "Echo" && len(inv.Arguments) == 1:
			answer["result"] = inv.Arguments[0]
		case event == "Add" && len(inv.Arguments) == 2:
			var a, b float64
			if json.Unmarshal(inv.Arguments[0], &a) != nil || json.Unmarshal(inv.Arguments[1], &b) != nil {
				answer["error"] = "Add takes two numbers"
			} else {
				answer["result"] = a + b
			}
		default:
			answer["error"] = "unknown method " + event
		}
		if inv.InvocationID == "" {
			return // a send: no completion
		}
		out, _ := json.Marshal(answer)
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(out, 0x1e)) // a framed CompletionMessage, as Azure Functions answers
	})
}

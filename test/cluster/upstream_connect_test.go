package cluster

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUpstreamConnectEvent runs test/signalr/upstream-connect.test.mjs
// against three nodes with -upstream-connect-event: the upstream's 403 to
// connections/connect refuses the negotiate, and its 200 admits the
// connection under the user id and groups it answers.
func TestUpstreamConnectEvent(t *testing.T) {
	dir := moduleDir(t, "test/signalr")
	ensureNodeModules(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.Header.Get("X-ASRS-Category") + "/" + r.Header.Get("X-ASRS-Event") {
		case "connections/connect":
			if strings.Contains(r.Header.Get("X-ASRS-Client-Query"), "room=closed") {
				http.Error(w, "the room is closed", http.StatusForbidden)
				return
			}
			var b struct {
				UserID string `json:"userId"`
			}
			json.Unmarshal(body, &b)
			json.NewEncoder(w).Encode(map[string]any{"userId": "admitted-" + b.UserID, "groups": []string{"lobby"}})
		case "messages/WhoAmI":
			var inv struct {
				InvocationID string `json:"invocationId"`
			}
			json.Unmarshal(body, &inv)
			out, _ := json.Marshal(map[string]any{"type": 3, "invocationId": inv.InvocationID, "result": r.Header.Get("X-ASRS-User-Id")})
			w.Write(append(out, 0x1e))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	nodes := startCluster(t, 3, nodeOptions{ExtraArgs: []string{
		"-access-key", signalrAccessKey, "-upstream-connect-event",
		"-upstream", "http://" + ln.Addr().String() + "/{category}/{event}",
	}})
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.baseURL())
	}
	out := runNode(t, dir, 2*time.Minute, []string{
		"BACKPLANE_NODES=" + strings.Join(urls, ","),
		"BACKPLANE_ACCESS_KEY=" + signalrAccessKey,
	}, "--test", "--test-reporter=spec", "upstream-connect.test.mjs")
	t.Log(out)
	for _, want := range []string{"fail 0", "skipped 0", "pass " + strconv.Itoa(2)} {
		if !strings.Contains(out, want) {
			t.Fatalf("node test summary lacks %q:\n%s", want, out)
		}
	}
}

package signalr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
)

// BenchmarkFanout measures the fan-out path of one node without Raft: a
// message committed to the store (through the fake cluster) is read by the
// dispatcher, encoded once and written to N local WebSocket connections,
// whose readers run in this process too. One op is one message reaching
// all N connections; deliveries/s is N times the ops per second.
//
//	go test ./transport/signalr -run '^$' -bench Fanout -benchtime 100x
func BenchmarkFanout(b *testing.B) {
	args := []byte(`["` + strings.Repeat("x", 190) + `"]`)
	publish := fsm.EncodePublish(&fsm.Publish{Hub: "bench", Audience: fsm.ToAll, Target: "m", Arguments: args})
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { benchFanout(b, n, false, publish) })
	}
}

// BenchmarkFanoutMsgpack is BenchmarkFanout to MessagePack connections:
// stored=json is a send from a JSON client or REST (its arguments are
// converted to MessagePack once per message), stored=msgpack a send from a
// MessagePack client (its arguments are copied as they were sent).
func BenchmarkFanoutMsgpack(b *testing.B) {
	text := strings.Repeat("x", 190)
	args := []byte(`["` + text + `"]`)
	mp := append([]byte{0x91, 0xd9, byte(len(text))}, text...)
	for _, c := range []struct {
		name string
		p    *fsm.Publish
	}{
		{"stored=json", &fsm.Publish{Hub: "bench", Audience: fsm.ToAll, Target: "m", Arguments: args}},
		{"stored=msgpack", &fsm.Publish{Hub: "bench", Audience: fsm.ToAll, Target: "m", Arguments: args, MsgpackArguments: mp}},
	} {
		b.Run(c.name+"/conns=100", func(b *testing.B) { benchFanout(b, 100, true, fsm.EncodePublish(c.p)) })
	}
}

// benchTarget is the client method of the benchmark's messages; readers
// count records that invoke it: in JSON, and the start of a MessagePack
// Invocation [1, {}, nil, "m", ...].
var (
	benchTarget        = []byte(`"target":"m"`)
	benchTargetMsgpack = []byte{0x96, 0x01, 0x80, 0xc0, 0xa1, 'm'}
)

func benchFanout(b *testing.B, n int, msgpack bool, publish fsm.Command) {
	f, err := fsm.New(fsm.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatalf("fsm.New: %v", err)
	}
	cluster := &fakeCluster{id: "a", f: f, urls: map[string]string{}}
	b.Cleanup(func() {
		cluster.mu.Lock()
		defer cluster.mu.Unlock()
		cluster.closed = true
		_ = f.Close()
	})
	srv := NewServer(cluster.node(cluster.id), testOptions(func(o *Options) { o.ClientTimeout = time.Minute }))
	mux := http.NewServeMux()
	srv.Register(mux)
	hs := httptest.NewServer(mux)
	b.Cleanup(hs.Close)
	srv.Start()
	b.Cleanup(srv.Stop)

	var received atomic.Int64 // records delivered to every reader so far
	var want atomic.Int64     // the count that completes the current op
	done := make(chan struct{}, 1)
	target := benchTarget
	if msgpack {
		target = benchTargetMsgpack
	}
	for i := range n {
		ws, err := benchDial(hs.URL, "bench", msgpack)
		if err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
		b.Cleanup(func() { _ = ws.Close() })
		go func() {
			for {
				_, data, err := ws.ReadMessage()
				if err != nil {
					return
				}
				if k := bytes.Count(data, target); k > 0 {
					if received.Add(int64(k)) == want.Load() {
						select {
						case done <- struct{}{}:
						default:
						}
					}
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		want.Store(int64(i+1) * int64(n))
		if _, err := cluster.Propose(context.Background(), []fsm.Command{publish}); err != nil {
			b.Fatalf("propose: %v", err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("message %d: %d of %d deliveries within 10s", i, received.Load()-int64(i)*int64(n), n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

// benchDial negotiates, upgrades and completes a JSON (or MessagePack)
// handshake.
func benchDial(base, hub string, msgpack bool) (*websocket.Conn, error) {
	resp, err := http.Post(base+"/hubs/"+hub+"/negotiate?negotiateVersion=1", "text/plain", nil)
	if err != nil {
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var neg struct {
		ConnectionToken string `json:"connectionToken"`
	}
	if err := json.Unmarshal(body, &neg); err != nil || neg.ConnectionToken == "" {
		return nil, fmt.Errorf("negotiate: %d %s", resp.StatusCode, body)
	}
	u := "ws" + strings.TrimPrefix(base, "http") + "/hubs/" + hub + "?id=" + url.QueryEscape(neg.ConnectionToken)
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	handshake := handshakeJSON
	if msgpack {
		handshake = `{"protocol":"messagepack","version":1}` + rs
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(handshake)); err != nil {
		ws.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil || string(data) != "{}"+rs {
		ws.Close()
		return nil, fmt.Errorf("handshake: got %q, %v; want {}", data, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, nil
}

// BenchmarkOutQueueBurst: a burst of 12 records queued to a connection
// and taken into one frame, as the dispatcher and a socket's writer do
// under fan-out; the queue is empty between bursts (an idle connection
// keeps no array).
func BenchmarkOutQueueBurst(b *testing.B) {
	q := newOutQueue(1024)
	rec := []byte(`{"type":1,"target":"m","arguments":["` + strings.Repeat("x", 190) + `"]}` + "\x1e")
	bp := frameBuffers.Get()
	defer frameBuffers.Put(bp)
	b.ReportAllocs()
	for b.Loop() {
		for range 12 {
			if ok, _ := q.pushQuiet(rec); !ok {
				b.Fatal("queue full")
			}
		}
		buf := q.take((*bp)[:0], maxFrameBytes)
		if len(buf) != 12*len(rec) {
			b.Fatalf("took %d bytes, want %d", len(buf), 12*len(rec))
		}
		*bp = buf // as the writer keeps a grown frame buffer
	}
}

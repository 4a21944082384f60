package stream

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/fsm/fsmtest"
	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/transport/netconn"
)

// slowServer serves the streams with a short write timeout over a server
// that records each request's connection, as the node's does.
func slowServer(t *testing.T, writeTimeout time.Duration) (*Server, string, func()) {
	t.Helper()
	f := fsmtest.Open(t, fsm.Config{})
	s := NewServer(f.FSM, Options{WriteTimeout: writeTimeout, KeepAlive: time.Minute})
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = netconn.Context
	srv.Start()
	t.Cleanup(srv.Close)
	payload := `["` + strings.Repeat("p", 1024) + `"]`
	publish := func() {
		cmds := make([]fsm.Command, 0, 50)
		for range 50 {
			cmds = append(cmds, fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToAll, Target: "recv", Arguments: []byte(payload)}))
		}
		f.Commit(time.Now().UnixNano(), cmds...)
	}
	return s, strings.TrimPrefix(srv.URL, "http://"), publish
}

// publishUntil publishes 50 messages every 10 ms until stop is closed.
func publishUntil(stop <-chan struct{}, publish func()) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			publish()
		}
	}
}

// A client that stops reading is cut within its write timeout of the
// socket filling up, counted and logged, whatever the kernel would queue.
func TestSlowClientsAreCut(t *testing.T) {
	const writeTimeout = time.Second
	for _, transport := range []string{"stream_sse", "stream_ws"} {
		t.Run(transport, func(t *testing.T) {
			s, addr, publish := slowServer(t, writeTimeout)
			var conn net.Conn
			switch transport {
			case "stream_sse":
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				conn = c
				_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
				fmt.Fprintf(c, "GET /v1/hubs/chat/stream?after=0 HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
				status, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || !strings.Contains(status, "200") {
					t.Fatalf("SSE answer %q: %v", status, err)
				}
			case "stream_ws":
				d := websocket.Dialer{NetDial: func(network, a string) (net.Conn, error) {
					c, err := net.Dial(network, a)
					if err == nil {
						_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
					}
					return c, err
				}}
				ws, _, err := d.Dial("ws://"+addr+"/v1/hubs/chat/ws?after=0", nil)
				if err != nil {
					t.Fatal(err)
				}
				conn = ws.NetConn()
			}
			defer conn.Close()
			// From here on the client reads nothing.
			stop, published := make(chan struct{}), make(chan struct{})
			defer func() { close(stop); <-published }() // before the store closes
			start := time.Now()
			go func() { defer close(published); publishUntil(stop, publish) }()
			testkit.WaitFor(t, 30*time.Second, "the server to cut the client that stopped reading", func() (bool, string) {
				n := s.SlowClientsCut()[transport]
				return n == 1, fmt.Sprintf("%d cut", n)
			})
			t.Logf("%s: a client that stopped reading (while ~5 MB/s were published) was cut after %s (write timeout %s)",
				transport, time.Since(start).Round(10*time.Millisecond), writeTimeout)
			// The socket is closed by the server: the client sees the end
			// once it reads again.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64<<10)
			for {
				if _, err := conn.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the cut connection is still open after 10 s")
					}
					break
				}
			}
		})
	}
}

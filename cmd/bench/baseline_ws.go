package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/hubproto"
)

// The raw WebSocket baseline: a gorilla/websocket server in this process
// broadcasts the same hub-protocol records Backplane sends (same target,
// same argument size) to the same number of local connections, either one
// record per frame or perFrame records per frame, as fast as the
// connections take them. The clients are the benchmark's own SignalR
// readers, so the client-side cost is the same as in the fan-out scenario.

// rawQueueDepth is the records the raw server queues per connection: its
// sender keeps up to this many outstanding, the depth the fan-out
// scenario's -fanout-window defaults to.
const rawQueueDepth = 64

// wsServer holds the accepted connections and their outbound queues.
type wsServer struct {
	mu     sync.Mutex
	queues []chan []byte
	ready  chan struct{} // receives one value per accepted connection
	srv    *http.Server
	ln     net.Listener
}

func startWSServer(perFrame int) (*wsServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &wsServer{ln: ln, ready: make(chan struct{}, 1<<16)}
	up := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 16 << 10}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		q := make(chan []byte, rawQueueDepth)
		s.mu.Lock()
		s.queues = append(s.queues, q)
		s.mu.Unlock()
		s.ready <- struct{}{}
		go func() { // discard whatever the client sends
			for {
				if _, _, err := ws.NextReader(); err != nil {
					return
				}
			}
		}()
		defer ws.Close()
		var buf []byte
		for rec := range q {
			buf = append(buf[:0], rec...)
			for i := 1; i < perFrame; i++ {
				next, ok := <-q
				if !ok {
					return
				}
				buf = append(buf, next...)
			}
			_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if ws.WriteMessage(websocket.TextMessage, buf) != nil {
				return
			}
		}
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *wsServer) close() {
	s.mu.Lock()
	for _, q := range s.queues {
		close(q)
	}
	s.queues = nil
	s.mu.Unlock()
	_ = s.srv.Close()
}

// wsBroadcast measures one raw broadcast for d.
func (b *bench) wsBroadcast(ctx context.Context, conns, perFrame int, d time.Duration) (*result, error) {
	r := &result{Name: fmt.Sprintf("raw WebSocket, %d/frame", perFrame), Params: map[string]any{"connections": conns, "messages_per_frame": perFrame},
		Description: fmt.Sprintf("a gorilla/websocket server in this process broadcasts to %d local connections", conns)}
	s, err := startWSServer(perFrame)
	if err != nil {
		return nil, err
	}
	defer s.close()
	t := newFanoutTracker(conns)
	url := "ws://" + s.ln.Addr().String() + "/"
	clients := make([]*hubClient, 0, conns)
	defer func() { closeAll(clients) }()
	for range conns {
		ws, _, err := readerDialer.DialContext(ctx, url, nil)
		if err != nil {
			return nil, fmt.Errorf("dial the raw WebSocket server: %w", err)
		}
		c := newHubClient(ws, 0, t.onMessage, nil)
		go c.read(nil)
		clients = append(clients, c)
	}
	for range conns {
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	queues := append([]chan []byte(nil), s.queues...)
	s.mu.Unlock()
	var seq int64
	var args []byte
	send := func() (int64, error) {
		now := time.Now()
		t.sentAt[seq].Store(now.UnixNano())
		args = b.payload.args(args[:0], now, seq, 0)
		rec := hubproto.AppendInvocationJSON(nil, targetMethod, args)
		for _, q := range queues {
			q <- rec
		}
		seq++
		return seq - 1, nil
	}
	if perFrame == 1 {
		// Single messages, as in the fan-out scenario.
		single, err := t.singles(ctx, b.cfg.fanoutMsgs, send)
		if err != nil {
			return nil, err
		}
		r.lat("one message → all connections", single)
	}

	stats := newDeliveryStats()
	t.d.Store(stats)
	prog := startProgress(b.stderr, fmt.Sprintf("raw websocket %d/frame", perFrame), stats.delivered)
	meter := startUsage(nil)
	frames0 := countFrames(clients)
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil && seq < maxFanoutSeq {
		send()
	}
	elapsed := time.Since(start)
	frames1 := countFrames(clients)
	prog.Stop()
	r.Usage = meter.Stop()
	r.add("deliveries/s", float64(stats.delivered.Load())/elapsed.Seconds(), "msg/s")
	r.add("records per WebSocket frame", recordsPerFrame(frames0, frames1), "")
	if n, why := dropped(clients); n > 0 {
		return nil, fmt.Errorf("%d raw WebSocket clients dropped: %s", n, why)
	}
	r.versus = []versus{{"fanout", "deliveries/s", "deliveries/s"}, {"fanout", "one message → all connections", "one message → all connections"}}
	return r, nil
}

// wsBaselines runs the raw WebSocket baselines, one record per frame and
// 16, to as many connections as fanout had.
func (b *bench) wsBaselines(ctx context.Context, rep *report) error {
	conns := b.cfg.fanoutConn * len(b.cl.nodes)
	if s := rep.scenario("fanout"); s == nil && len(rep.Scenarios) > 0 {
		return nil // no fan-out to compare with
	}
	var errs []error
	for _, perFrame := range []int{1, 16} {
		b.logf("baseline: raw gorilla/websocket broadcast to %d local connections, %d message(s) per frame", conns, perFrame)
		r, err := b.wsBroadcast(ctx, conns, perFrame, b.cfg.duration)
		if err != nil {
			errs = append(errs, fmt.Errorf("raw websocket baseline (%d/frame): %w", perFrame, err))
			continue
		}
		rep.Baselines = append(rep.Baselines, r)
	}
	return errors.Join(errs...)
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
)

// The idle scenario's endpoints: SignalR (negotiate, upgrade, JSON
// handshake; the default), the native cursor stream's WebSocket and
// SignalR 2's WebSocket transport.
var idleEndpoints = []string{"signalr", "stream", "signalr2"}

// idleCountKeys are the /admin/status connection counts that must each
// grow by the connections an endpoint holds.
var idleCountKeys = map[string][]string{
	"signalr":  {"signalr_websockets", "cluster_signalr"},
	"stream":   {"stream_ws"},
	"signalr2": {"signalr2_websockets"},
}

// dialIdle opens n idle connections of endpoint to one node, at most 32
// dials at a time; opened counts them as they connect. Each is a hubClient
// that only reads (readIdle).
func (b *bench) dialIdle(ctx context.Context, endpoint, hub string, target, n int, opened *counter) ([]*hubClient, error) {
	base := b.cl.nodes[target].url
	hc := newHTTPClient(32)
	defer hc.CloseIdleConnections() // not counted as the sockets' memory
	dial := func() (*websocket.Conn, error) { return dialStreamSocket(ctx, base, hub) }
	switch endpoint {
	case "signalr":
		dial = func() (*websocket.Conn, error) {
			ws, _, err := dialHubSocket(ctx, hc, idleDialer, base, hub)
			return ws, err
		}
	case "signalr2":
		dial = func() (*websocket.Conn, error) { return dialSignalR2Socket(ctx, hc, base, hub) }
	}
	sockets, err := openMany(ctx, n, opened, func(i int) (*hubClient, error) {
		ws, err := dial()
		if err != nil {
			return nil, fmt.Errorf("%s socket %d: %w", endpoint, i, err)
		}
		c := &hubClient{ws: ws, readEnd: readEnd{closed: make(chan struct{})}}
		go c.readIdle()
		return c, nil
	})
	if err != nil {
		closeAll(sockets)
		return nil, err
	}
	return sockets, nil
}

// readIdle reads (and drops) frames until the socket ends: gorilla answers
// the server's pings while it reads.
func (c *hubClient) readIdle() {
	defer close(c.closed)
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			c.err = err
			return
		}
	}
}

// dialStreamSocket opens a native stream of hub over WebSocket, from the
// current end of the log.
func dialStreamSocket(ctx context.Context, base, hub string) (*websocket.Conn, error) {
	ws, _, err := idleDialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/hubs/"+hub+"/ws", nil)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return ws, nil
}

// dialSignalR2Socket negotiates a SignalR 2 connection to hub and connects
// it over WebSocket; it returns once the init frame arrived.
func dialSignalR2Socket(ctx context.Context, hc *http.Client, base, hub string) (*websocket.Conn, error) {
	q := url.Values{"clientProtocol": {"2.1"}, "connectionData": {`[{"name":"` + hub + `"}]`}}
	token, err := negotiate(ctx, hc, http.MethodGet, base+"/signalr/negotiate?"+q.Encode())
	if err != nil {
		return nil, err
	}
	q.Set("transport", "webSockets")
	q.Set("connectionToken", token)
	ws, _, err := idleDialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/signalr/connect?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	if _, _, err := ws.ReadMessage(); err != nil { // the init frame {"S":1,…}
		ws.Close()
		return nil, fmt.Errorf("init frame: %w", err)
	}
	return ws, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
)

// The idle scenario's endpoints: SignalR (hubClient, the default), the
// native cursor stream's WebSocket and SignalR 2's WebSocket transport.
var idleEndpoints = []string{"signalr", "stream", "signalr2"}

// idleCountKeys are the /admin/status connection counts that must each
// grow by the connections an endpoint holds.
var idleCountKeys = map[string][]string{
	"signalr":  {"signalr_websockets", "cluster_signalr"},
	"stream":   {"stream_ws"},
	"signalr2": {"signalr2_websockets"},
}

// idleSocket is a WebSocket of the native stream or of SignalR 2 that the
// benchmark holds open: one goroutine reads it (answering the server's
// pings) until it ends.
type idleSocket struct {
	ws *websocket.Conn
	readEnd
}

// idleSet is what the idle scenario holds, of any endpoint.
type idleSet struct {
	hub     []*hubClient  // signalr
	sockets []*idleSocket // stream, signalr2
}

// dropped counts the connections that ended, with the first reason.
func (s idleSet) dropped() (int, string) {
	if s.hub != nil {
		return dropped(s.hub)
	}
	return dropped(s.sockets)
}

func (s idleSet) size() int { return len(s.hub) + len(s.sockets) }

func (s idleSet) close() {
	closeAll(s.hub)
	for _, c := range s.sockets {
		if c != nil {
			_ = c.ws.Close()
		}
	}
}

// dialIdle opens n idle connections of endpoint to one node, at most 32
// dials at a time; opened counts them as they connect.
func (b *bench) dialIdle(ctx context.Context, endpoint, hub string, target, n int, opened *counter) (idleSet, error) {
	if endpoint == "signalr" {
		clients, err := dialMany(ctx, b.cl, hub, n, func(int) int { return target }, nil, nil, idleDialer, opened)
		return idleSet{hub: clients}, err
	}
	base := b.cl.nodes[target].url
	hc := newHTTPClient(32)
	defer hc.CloseIdleConnections() // not counted as the sockets' memory
	dial := func() (*websocket.Conn, error) { return dialStreamSocket(ctx, base, hub) }
	if endpoint == "signalr2" {
		dial = func() (*websocket.Conn, error) { return dialSignalR2Socket(ctx, hc, base, hub) }
	}
	sockets, err := openMany(ctx, n, opened, func(i int) (*idleSocket, error) {
		ws, err := dial()
		if err != nil {
			return nil, fmt.Errorf("%s socket %d: %w", endpoint, i, err)
		}
		s := &idleSocket{ws: ws, readEnd: readEnd{closed: make(chan struct{})}}
		go s.read()
		return s, nil
	})
	set := idleSet{sockets: sockets}
	if err != nil {
		set.close()
		return idleSet{}, err
	}
	return set, nil
}

// read reads (and drops) frames until the socket ends: gorilla answers
// the server's pings while it reads.
func (s *idleSocket) read() {
	defer close(s.closed)
	for {
		if _, _, err := s.ws.NextReader(); err != nil {
			s.err = err
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/signalr/negotiate?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var neg struct{ ConnectionToken string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &neg) != nil || neg.ConnectionToken == "" {
		return nil, fmt.Errorf("negotiate: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	q.Set("transport", "webSockets")
	q.Set("connectionToken", neg.ConnectionToken)
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

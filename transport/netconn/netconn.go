// Package netconn gives client handlers the network connection under a
// request, upgrades WebSockets (UpgradeWebSocket), bounds how much the
// kernel queues for a client that does not read, and parks idle
// connections in an epoll set of its own (Parker) so that they need no
// goroutine for reading; a Pump runs a connection's writer only while it
// has something to send, and a KeepAlive sends its keep-alives from a
// timer, so that it needs none for writing either. It knows nothing of hub
// protocols: the native streams, SignalR and SignalR 2 use it.
//
// Why the send buffer matters: a write deadline only fires once the
// socket stops taking bytes, and Linux grows a socket's send buffer to
// megabytes, so a client that stopped reading was cut only after ~3 MB had
// piled up (tens of seconds at a normal rate). With the buffer bounded, a
// write blocks soon after the client stops, and the handler's write
// deadline cuts it within its documented time.
package netconn

import (
	"context"
	"fmt"
	"net"
	"net/http"
)

// SendBuffer is the kernel send buffer given to streaming client
// connections: a few pages of messages, enough for full throughput on a
// LAN.
const SendBuffer = 64 << 10

type ctxKey struct{}

// Context returns ctx carrying c. Set it as http.Server.ConnContext so
// that From finds a request's connection.
func Context(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// From returns the connection that carries r, if the server recorded it
// with Context.
func From(r *http.Request) (net.Conn, bool) {
	c, ok := r.Context().Value(ctxKey{}).(net.Conn)
	return c, ok
}

// LimitSendBuffer sets the kernel send buffer of c's TCP socket to bytes,
// under wrappers that give the connection underneath by a NetConn method
// (*tls.Conn, WatchedConn). Connections that are not TCP are left alone.
func LimitSendBuffer(c net.Conn, bytes int) error {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tcp.SetWriteBuffer(bytes); err != nil {
		return fmt.Errorf("netconn: set send buffer: %w", err)
	}
	return nil
}

// LimitRequestSendBuffer bounds the send buffer of the connection under r,
// when the server recorded it.
func LimitRequestSendBuffer(r *http.Request, bytes int) {
	if c, ok := From(r); ok {
		_ = LimitSendBuffer(c, bytes)
	}
}

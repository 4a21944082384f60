package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Timeouts of node-to-node connections.
const (
	dialTimeout      = 2 * time.Second
	keepAlive        = 30 * time.Second
	handshakeTimeout = 5 * time.Second
)

// dialer makes every node-to-node TCP connection.
var dialer = &net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive}

// newTransport builds the one transport of node-to-node HTTP. Its TLS
// connections are made by dialTLS, which builds the configuration per
// connection so rotated certificates and CAs apply without a restart. It
// never uses a proxy from the environment and speaks HTTP/1.1 only.
func (a *Auth) newTransport() *http.Transport {
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if a.servesTLS() {
		t.DialTLSContext = a.dialTLS
	}
	return t
}

// Client is the one HTTP client for node-to-node calls, sharing one
// transport (and its kept-alive connections). With peer TLS it presents
// the member certificate. It does not sign requests: use Do, or Sign
// before Client().Do. It has no overall timeout; give requests a context.
func (a *Auth) Client() *http.Client { return a.client }

// Do signs req (ModeKey) and sends it with Client. body is the exact
// request body, or nil for a streamed body left out of the signature. When
// req has no body yet and body is not nil, Do sets it.
func (a *Auth) Do(req *http.Request, body []byte) (*http.Response, error) {
	if body != nil && (req.Body == nil || req.Body == http.NoBody) {
		req.ContentLength = int64(len(body))
		req.Body, req.GetBody = http.NoBody, nil
		if len(body) > 0 {
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			req.Body, _ = req.GetBody()
		}
	}
	a.Sign(req, body)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer request %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return resp, nil
}

// DialHTTP opens a raw connection to a member's HTTP port (hostport), for
// a WebSocket tunnel: TLS as Client does when the port serves HTTPS, else
// plain TCP. The caller writes the HTTP request itself (and signs it).
func (a *Auth) DialHTTP(ctx context.Context, hostport string) (net.Conn, error) {
	if a.servesTLS() {
		return a.dialTLS(ctx, "tcp", hostport)
	}
	return dialer.DialContext(ctx, "tcp", hostport)
}

// dialTLS connects to addr and completes the TLS handshake with the
// current certificates. A handshake failure is a handshakeError: nothing
// of the request was sent.
func (a *Auth) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	raw, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, a.dialConfig(host))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, &handshakeError{addr: addr, err: err}
	}
	return conn, nil
}

// handshakeError is a TLS handshake that failed before any request byte.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("tls handshake with %s: %v", e.addr, e.err)
}
func (e *handshakeError) Unwrap() error { return e.err }

// IsDialError reports whether err means nothing was sent because the
// connection could not be made: a failed dial (net.OpError with Op
// "dial") or a failed TLS handshake. Such a request is always safe to
// retry, on the same member or another.
func IsDialError(err error) bool {
	var he *handshakeError
	if errors.As(err, &he) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

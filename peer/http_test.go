package peer

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// verifyServer serves a's HTTP port on 127.0.0.1: 200 and the body echoed
// back when a.Verify accepts, 403 when it refuses with ErrUnauthenticated,
// 500 for anything else. It returns host:port.
func verifyServer(t *testing.T, a *Auth) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch err := a.Verify(r); {
			case err == nil:
				_, _ = io.Copy(w, r.Body)
			case errors.Is(err, ErrUnauthenticated):
				http.Error(w, err.Error(), http.StatusForbidden)
			default:
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}),
		TLSConfig:         a.HTTPTLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if srv.TLSConfig != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// send sends req with c and returns the status and body.
func send(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newReq(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestVerifyClusterKey(t *testing.T) {
	const key = "correct horse battery staple"
	srv := mustNew(t, Config{NodeID: "a", ClusterKey: key})
	base := srv.URL(verifyServer(t, srv))
	if srv.Scheme() != "http" || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("scheme %q, base %q: want plain http with the key alone", srv.Scheme(), base)
	}
	b := mustNew(t, Config{NodeID: "b", ClusterKey: key})
	do := func(a *Auth, req *http.Request, body []byte) (int, string) {
		t.Helper()
		a.Sign(req, body)
		return send(t, a.Client(), req)
	}
	expect := func(name string, code int, text string, wantCode int, wantText string) {
		t.Helper()
		if code != wantCode || !strings.Contains(text, wantText) {
			t.Errorf("%s: %d %q, want %d containing %q", name, code, text, wantCode, wantText)
		}
	}

	resp, err := b.Do(newReq(t, "POST", base+"/v1/x?y=1", ""), []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	expect("signed body via Do", resp.StatusCode, string(got), 200, "payload")
	code, text := do(b, newReq(t, "GET", base+"/v1/info", ""), nil)
	expect("GET, no body", code, text, 200, "")
	code, text = do(b, newReq(t, "POST", base+"/stream", "streamed"), nil)
	expect("streamed body left unsigned", code, text, 200, "streamed")

	wrong := mustNew(t, Config{NodeID: "b", ClusterKey: "wrong horse battery staple"})
	code, text = do(wrong, newReq(t, "POST", base+"/v1/x", "p"), []byte("p"))
	expect("wrong key", code, text, 403, "bad signature")

	for name, skew := range map[string]time.Duration{"stale": -2 * time.Minute, "future": 2 * time.Minute} {
		skewed := mustNew(t, Config{NodeID: "b", ClusterKey: key})
		skewed.now = func() time.Time { return time.Now().Add(skew) }
		code, text = do(skewed, newReq(t, "GET", base+"/v1/info", ""), nil)
		expect(name+" time", code, text, 403, "off this node's clock")
	}

	first := newReq(t, "POST", base+"/v1/x", "once")
	b.Sign(first, []byte("once"))
	code, text = send(t, b.Client(), first)
	expect("original", code, text, 200, "once")
	again := newReq(t, "POST", base+"/v1/x", "once")
	again.Header = first.Header.Clone()
	code, text = send(t, b.Client(), again)
	expect("replayed nonce", code, text, 403, "replayed")

	tampered := newReq(t, "POST", base+"/v1/x", "changed")
	b.Sign(tampered, []byte("original"))
	code, text = send(t, b.Client(), tampered)
	expect("tampered body", code, text, 403, "bad signature")

	moved := newReq(t, "POST", base+"/v1/remove", "")
	b.Sign(moved, nil)
	moved.URL.Path = "/v1/join"
	code, text = send(t, b.Client(), moved)
	expect("changed path", code, text, 403, "bad signature")

	code, text = send(t, http.DefaultClient, newReq(t, "GET", base+"/v1/info", ""))
	expect("no headers", code, text, 403, "no cluster-key signature")
}

func TestVerifyWithoutMemberAuth(t *testing.T) {
	a := mustNew(t, Config{NodeID: "a"})
	if err := a.Verify(httptest.NewRequest("GET", "/", nil)); !errors.Is(err, ErrNoPeerAuth) {
		t.Fatalf("Verify with no member authentication: %v, want ErrNoPeerAuth", err)
	}
	if a.HTTPTLSConfig() != nil || a.URL("127.0.0.1:1") != "http://127.0.0.1:1" {
		t.Fatal("a plain node serves TLS")
	}
	req := httptest.NewRequest("GET", "/", nil)
	a.Sign(req, nil)
	p := newPKI(t)
	p.tlsAuth(t, "m1", p.member1).Sign(req, nil)
	if len(req.Header) != 0 {
		t.Fatalf("Sign outside ModeKey added headers %v", req.Header)
	}
}

// TestHTTPTLSSplitBySNI: members get the peer certificate and must present
// theirs; everyone else gets the client certificate and needs none.
func TestHTTPTLSSplitBySNI(t *testing.T) {
	p := newPKI(t)
	srv := mustNew(t, Config{NodeID: "m1", CertFile: p.member1.cert, KeyFile: p.member1.key, CAFile: p.caFile,
		ClientCertFile: p.client.cert, ClientKeyFile: p.client.key})
	addr := verifyServer(t, srv)
	member := p.tlsAuth(t, "m2", p.member2)
	base := member.URL(addr)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %q, want https", base)
	}

	resp, err := member.Do(newReq(t, "POST", base+"/internal", ""), []byte("member"))
	if err != nil {
		t.Fatalf("member request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "member" || resp.TLS.PeerCertificates[0].Subject.CommonName != "member1" {
		t.Fatalf("member: %d %q from %q, want 200 from member1", resp.StatusCode, body, resp.TLS.PeerCertificates[0].Subject.CommonName)
	}

	// A browser: no certificate, trusts the client certificate's CA.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.other.pem)
	browser := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer browser.CloseIdleConnections()
	resp, err = browser.Do(newReq(t, "GET", "https://"+addr+"/", ""))
	if err != nil {
		t.Fatalf("browser with no certificate: %v", err)
	}
	_ = resp.Body.Close()
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "client" || resp.StatusCode != 403 {
		t.Fatalf("browser got %d from %q, want 403 (not a member) from the client certificate", resp.StatusCode, cn)
	}

	// A member certificate on the browser path still proves a member.
	m2, err := tls.LoadX509KeyPair(p.member2.cert, p.member2.key)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{m2}}}}
	defer withCert.CloseIdleConnections()
	if code, _ := send(t, withCert, newReq(t, "GET", "https://"+addr+"/", "")); code != 200 {
		t.Fatalf("member certificate under the client SNI: %d, want 200", code)
	}

	// Asking for the peer name with no certificate, or one of another CA,
	// gets the peer certificate and no answer.
	stranger, err := tls.LoadX509KeyPair(p.stranger.cert, p.stranger.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{"no certificate": {}, "other CA": &stranger} {
		c, err := tls.Dial("tcp", addr, sendAnyCert(cert))
		if err != nil {
			continue // refused in the handshake (TLS 1.2)
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "member1" {
			t.Errorf("%s: the peer name got %q, want the peer certificate", name, cn)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			t.Errorf("%s: the peer name answered %d, want the connection refused", name, resp.StatusCode)
		}
		_ = c.Close()
	}

	// DialHTTP: a raw TLS connection as a member, for a tunnel.
	conn, err := member.DialHTTP(t.Context(), addr)
	if err != nil {
		t.Fatalf("DialHTTP: %v", err)
	}
	defer conn.Close()
	if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("DialHTTP gave %T, want a TLS connection", conn)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("DialHTTP request: %v %v, want 200", resp, err)
	}
}

func TestIsDialError(t *testing.T) {
	p := newPKI(t)
	closed := listen(t)
	closedAddr := closed.Addr().String()
	_ = closed.Close()
	plain := mustNew(t, Config{NodeID: "a"})
	_, err := plain.Do(newReq(t, "GET", plain.URL(closedAddr), ""), nil)
	if err == nil || !IsDialError(err) {
		t.Errorf("closed port: %v, want a dial error", err)
	}

	memberAddr := verifyServer(t, p.tlsAuth(t, "m1", p.member1))
	stranger := p.strangerAuth(t)
	_, err = stranger.Do(newReq(t, "GET", stranger.URL(memberAddr), ""), nil)
	if err == nil || !IsDialError(err) {
		t.Errorf("TLS handshake refused: %v, want a dial error", err)
	}

	// A server that reads the request and hangs up: it was sent.
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_ = c.Close()
		}
	}()
	_, err = plain.Do(newReq(t, "POST", plain.URL(ln.Addr().String()), ""), bytes.Repeat([]byte("x"), 10))
	if err == nil || IsDialError(err) {
		t.Errorf("hang-up after the request: %v, want an error that is not a dial error", err)
	}
	if IsDialError(nil) || IsDialError(&net.OpError{Op: "read", Err: io.EOF}) {
		t.Error("nil or a read error counted as a dial error")
	}
}

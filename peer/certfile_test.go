package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rewrite issues a new certificate for cn into f's files, with a modification
// time of its own so the change is seen whatever the file system's clock
// resolution.
func rewrite(t *testing.T, ca *testCA, f certFiles, cn string, mod time.Time) {
	t.Helper()
	c, k := ca.issue(t, cn)
	writeFile(t, f.cert, c)
	writeFile(t, f.key, k)
	for _, name := range []string{f.cert, f.key} {
		if err := os.Chtimes(name, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

// checkEveryUse makes r check its files on every get.
func checkEveryUse[T any](r *reloader[T]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interval, r.next = 0, time.Time{}
}

// servedCN handshakes with addr as cfg and returns the common name of the
// certificate the server presented.
func servedCN(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestCertReload: rewritten certificate files are served from the next
// handshake on, with no restart; files that do not load keep the previous
// certificate and log a warning.
func TestCertReload(t *testing.T) {
	p := newPKI(t)
	logs := &logBuffer{}
	srv := mustNew(t, Config{NodeID: "m1", CertFile: p.member1.cert, KeyFile: p.member1.key, CAFile: p.caFile,
		ClientCertFile: p.client.cert, ClientKeyFile: p.client.key, Logger: logs.logger()})
	// Check the files on every use, so "the next handshake" is exact; the
	// once-a-second limit has its own test below.
	checkEveryUse(srv.peerCert)
	checkEveryUse(srv.clientCert)
	addr := verifyServer(t, srv)
	member := p.tlsAuth(t, "m2", p.member2)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.other.pem)
	browser := &tls.Config{RootCAs: roots, ServerName: "localhost"}

	if cn := servedCN(t, addr, member.dialConfig("127.0.0.1")); cn != "member1" {
		t.Fatalf("peer name served %q, want member1", cn)
	}
	if cn := servedCN(t, addr, browser); cn != "client" {
		t.Fatalf("client name served %q, want client", cn)
	}

	mod := time.Now().Add(time.Minute)
	rewrite(t, p.ca, p.member1, "member1-rotated", mod)
	rewrite(t, p.other, p.client, "client-rotated", mod)
	if cn := servedCN(t, addr, member.dialConfig("127.0.0.1")); cn != "member1-rotated" {
		t.Fatalf("after rotation the peer name served %q, want member1-rotated", cn)
	}
	if cn := servedCN(t, addr, browser); cn != "client-rotated" {
		t.Fatalf("after rotation the client name served %q, want client-rotated", cn)
	}

	writeFile(t, p.client.cert, []byte("not a certificate"))
	if err := os.Chtimes(p.client.cert, mod.Add(time.Minute), mod.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, addr, browser); cn != "client-rotated" {
		t.Fatalf("after a broken rewrite the client name served %q, want the previous client-rotated", cn)
	}
	if !contains(logs.String(), "level=WARN", "reloading certificate files failed", "-tls-cert") {
		t.Fatalf("no warning for the broken rewrite; logs:\n%s", logs)
	}
}

func TestReloaderChecksAtMostOncePerInterval(t *testing.T) {
	file := filepath.Join(t.TempDir(), "value")
	writeFile(t, file, []byte("one"))
	logs := &logBuffer{}
	loads := 0
	r, err := newReloader("-test", logs.logger(), func() (string, error) {
		loads++
		b, err := os.ReadFile(file)
		if string(b) == "bad" {
			return "", errors.New("bad content")
		}
		return string(b), err
	}, file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	set := func(content string, mod time.Time) {
		writeFile(t, file, []byte(content))
		if err := os.Chtimes(file, mod, mod); err != nil {
			t.Fatal(err)
		}
	}

	set("two", now.Add(time.Minute))
	if v := r.get(); v != "one" {
		t.Fatalf("changed within the interval: got %q, want the old one", v)
	}
	now = now.Add(reloadInterval)
	if v := r.get(); v != "two" {
		t.Fatalf("after the interval: got %q, want two", v)
	}
	now = now.Add(reloadInterval)
	if v := r.get(); v != "two" || loads != 2 {
		t.Fatalf("unchanged files: got %q after %d loads, want two after 2", v, loads)
	}

	set("bad", now.Add(2*time.Minute))
	now = now.Add(reloadInterval)
	if v := r.get(); v != "two" || !strings.Contains(logs.String(), "keeping the previous ones") {
		t.Fatalf("failed load: got %q, logs %q; want two and a warning", v, logs)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	now = now.Add(reloadInterval)
	if v := r.get(); v != "two" || !strings.Contains(logs.String(), "cannot check certificate files") {
		t.Fatalf("missing file: got %q, logs %q; want two and a warning", v, logs)
	}
}

func TestNewNamesTheFlag(t *testing.T) {
	p := newPKI(t)
	empty := filepath.Join(p.dir, "empty.pem")
	writeFile(t, empty, []byte("no PEM here\n"))
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"peer cert without CA", Config{CertFile: p.member1.cert, KeyFile: p.member1.key}, "-peer-tls-ca"},
		{"tls cert without key", Config{ClientCertFile: p.client.cert}, "-tls-key"},
		{"missing peer cert", Config{CertFile: filepath.Join(p.dir, "nope.crt"), KeyFile: p.member1.key, CAFile: p.caFile}, "-peer-tls-cert"},
		{"peer key of another cert", Config{CertFile: p.member1.cert, KeyFile: p.member2.key, CAFile: p.caFile}, "-peer-tls-key"},
		{"CA file with no certificate", Config{CertFile: p.member1.cert, KeyFile: p.member1.key, CAFile: empty}, "-peer-tls-ca"},
		{"member cert of another CA", Config{CertFile: p.stranger.cert, KeyFile: p.stranger.key, CAFile: p.caFile}, "-peer-tls-cert: not usable"},
		{"broken client cert", Config{ClusterKey: "k", ClientCertFile: empty, ClientKeyFile: p.client.key}, "-tls-cert"},
	}
	for _, c := range cases {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}

	modes := map[Mode]Config{
		ModeTLS:  {CertFile: p.member1.cert, KeyFile: p.member1.key, CAFile: p.caFile, ClusterKey: "ignored when certificates are set"},
		ModeKey:  {ClusterKey: "correct horse battery staple"},
		ModeNone: {},
	}
	for want, cfg := range modes {
		if got := mustNew(t, cfg).Mode(); got != want {
			t.Errorf("mode %v, want %v", got, want)
		}
	}
	if ModeKey.String() != "cluster-key" || ModeTLS.String() != "tls" || ModeNone.String() != "none" || Mode(9).String() != "Mode(9)" {
		t.Error("Mode.String names")
	}
}

package peer

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backplane/backplane/internal/testkit"
	"github.com/backplane/backplane/internal/testpki"
)

// testCA signs certificates for a test.
// testCA is a test certificate authority (internal/testpki).
type testCA struct {
	*testpki.CA
	pem []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := testpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, pem: ca.PEM}
}

// issue signs a certificate for cn, valid for server and client use on
// 127.0.0.1, ::1 and localhost; it returns the certificate and key PEM.
func (ca *testCA) issue(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.Issue(cn)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// certFiles is a certificate and key written to disk.
type certFiles struct{ cert, key string }

// writeCert issues a certificate for cn and writes it under dir.
func (ca *testCA) writeCert(t *testing.T, dir, cn string) certFiles {
	t.Helper()
	c, k := ca.issue(t, cn)
	f := certFiles{cert: filepath.Join(dir, cn+".crt"), key: filepath.Join(dir, cn+".key")}
	writeFile(t, f.cert, c)
	writeFile(t, f.key, k)
	return f
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testPKI is a peer CA with two members, a client certificate from its own
// CA, and a stranger whose certificate comes from a different CA.
type testPKI struct {
	dir                      string
	ca, other                *testCA
	caFile, otherCAFile      string
	member1, member2, client certFiles
	stranger                 certFiles
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), ca: newTestCA(t, "peer CA"), other: newTestCA(t, "other CA")}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	p.otherCAFile = filepath.Join(p.dir, "other-ca.pem")
	writeFile(t, p.caFile, p.ca.pem)
	writeFile(t, p.otherCAFile, p.other.pem)
	p.member1 = p.ca.writeCert(t, p.dir, "member1")
	p.member2 = p.ca.writeCert(t, p.dir, "member2")
	p.client = p.other.writeCert(t, p.dir, "client")
	p.stranger = p.other.writeCert(t, p.dir, "stranger")
	return p
}

// tlsAuth is a ModeTLS Auth presenting m under the peer CA.
func (p *testPKI) tlsAuth(t *testing.T, id string, m certFiles) *Auth {
	t.Helper()
	return mustNew(t, Config{NodeID: id, CertFile: m.cert, KeyFile: m.key, CAFile: p.caFile})
}

// strangerAuth is a ModeTLS Auth of another cluster (the other CA).
func (p *testPKI) strangerAuth(t *testing.T) *Auth {
	t.Helper()
	return mustNew(t, Config{NodeID: "stranger", CertFile: p.stranger.cert, KeyFile: p.stranger.key, CAFile: p.otherCAFile})
}

func mustNew(t *testing.T, cfg Config) *Auth {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.client.CloseIdleConnections)
	return a
}

// listen binds 127.0.0.1:0 and closes the listener when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// logBuffer collects log lines for assertions.
type logBuffer struct{ testkit.Buffer }

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// contains reports whether s contains every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// sendAnyCert is a client that asks for ServerName, trusts any server and
// presents cert (empty: none) whatever CAs the server asks for.
func sendAnyCert(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		ServerName:           ServerName,
		InsecureSkipVerify:   true, //nolint:gosec // a test client probing the server
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	}
}

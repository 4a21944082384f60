package peer

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNoPeerAuth: members do not authenticate each other (no peer
	// certificates and no cluster key). Verify returns it; the caller
	// decides what to accept instead.
	ErrNoPeerAuth = errors.New("no member authentication configured")
	// ErrUnauthenticated: the peer did not prove it is a member.
	ErrUnauthenticated = errors.New("peer is not an authenticated member")
)

// ServerName is the TLS server name a member asks for when it connects to
// another member. On the HTTP port it selects the peer certificate and a
// required client certificate; it is never checked against a certificate.
const ServerName = "backplane-peer"

// Mode is how members authenticate each other.
type Mode int

// The modes, from the configuration: peer certificates win over a cluster
// key, and with neither there is no member authentication.
const (
	ModeNone Mode = iota // no member authentication
	ModeTLS              // mutual TLS with certificates signed by the peer CA
	ModeKey              // a shared cluster key (authenticates, does not encrypt)
)

// String names the mode for logs and status pages.
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeTLS:
		return "tls"
	case ModeKey:
		return "cluster-key"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config configures member authentication and client TLS. Nothing is
// changed after New.
type Config struct {
	// NodeID is this node's id, sent with signed requests.
	NodeID string
	// CertFile, KeyFile and CAFile turn on peer mutual TLS (all three or
	// none): -peer-tls-cert, -peer-tls-key, -peer-tls-ca.
	CertFile, KeyFile, CAFile string
	// ClusterKey is the shared secret, used when there are no peer
	// certificates (-cluster-key). It may be a comma-separated list for
	// rotation: the first key proves, every key is accepted.
	ClusterKey string
	// ClientCertFile and ClientKeyFile serve HTTPS to clients on the HTTP
	// port (-tls-cert, -tls-key; optional, both or none).
	ClientCertFile, ClientKeyFile string
	Logger                        *slog.Logger
}

// Auth authenticates members to each other and makes node-to-node
// connections. It is safe for concurrent use.
type Auth struct {
	nodeID string
	mode   Mode
	log    *slog.Logger

	peerCert   *reloader[*keyPair]  // ModeTLS
	peerCA     *reloader[*caBundle] // ModeTLS
	clientCert *reloader[*keyPair]  // -tls-cert, any mode

	// ModeKey: the HMAC keys derived from each cluster key, for
	// node-to-node HTTP and for the Raft handshake. The first of each
	// proves; all are accepted.
	httpKeys [][]byte
	raftKeys [][]byte
	replay   *replayCache

	client *http.Client
	now    func() time.Time
}

// New loads and checks the certificate files and derives the keys. Its
// errors name the flag at fault.
func New(cfg Config) (*Auth, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Auth{nodeID: cfg.NodeID, log: cfg.Logger, now: time.Now}
	set := 0
	for _, f := range []string{cfg.CertFile, cfg.KeyFile, cfg.CAFile} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return nil, errors.New("peer: -peer-tls-cert, -peer-tls-key and -peer-tls-ca go together: set all three or none")
	}
	if (cfg.ClientCertFile == "") != (cfg.ClientKeyFile == "") {
		return nil, errors.New("peer: -tls-cert and -tls-key go together: set both or neither")
	}
	var err error
	switch {
	case set == 3:
		a.mode = ModeTLS
		a.peerCert, err = newReloader("-peer-tls-cert/-peer-tls-key", a.log,
			loadKeyPair(cfg.CertFile, cfg.KeyFile, false), cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("peer: -peer-tls-cert/-peer-tls-key: %w", err)
		}
		a.peerCA, err = newReloader("-peer-tls-ca", a.log, loadCA(cfg.CAFile), cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("peer: -peer-tls-ca: %w", err)
		}
		if err := checkMemberCert(a.peerCert.get(), a.peerCA.get()); err != nil {
			return nil, fmt.Errorf("peer: -peer-tls-cert: %w", err)
		}
	case cfg.ClusterKey != "":
		a.mode = ModeKey
		for _, k := range strings.Split(cfg.ClusterKey, ",") {
			if k = strings.TrimSpace(k); k == "" {
				return nil, errors.New("peer: -cluster-key: an empty key in the comma-separated list")
			}
			a.httpKeys = append(a.httpKeys, deriveKey(k, "backplane peer http v1"))
			a.raftKeys = append(a.raftKeys, deriveKey(k, "backplane peer raft v1"))
		}
		a.replay = newReplayCache(maxReplayEntries)
	}
	if cfg.ClientCertFile != "" {
		a.clientCert, err = newReloader("-tls-cert/-tls-key", a.log,
			loadKeyPair(cfg.ClientCertFile, cfg.ClientKeyFile, true), cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("peer: -tls-cert/-tls-key: %w", err)
		}
	}
	a.client = &http.Client{Transport: a.newTransport()}
	return a, nil
}

// checkMemberCert refuses, at start, a peer certificate that the other
// members would refuse: one not signed by the peer CA, or one that cannot
// serve as both a server and a client certificate.
func checkMemberCert(kp *keyPair, ca *caBundle) error {
	leaf, err := x509.ParseCertificate(kp.cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(verifyOptions(ca.pool, intermediates(kp.cert.Certificate[1:]), usage)); err != nil {
			return fmt.Errorf("not usable as a member certificate under -peer-tls-ca (it needs the serverAuth and clientAuth key usages): %w", err)
		}
	}
	return nil
}

// deriveKey derives a sub-key of the cluster key for one use, so a proof
// made for one use is worthless for another.
func deriveKey(clusterKey, use string) []byte {
	m := hmac.New(sha256.New, []byte(clusterKey))
	m.Write([]byte(use))
	return m.Sum(nil)
}

// Mode is how members authenticate each other.
func (a *Auth) Mode() Mode { return a.mode }

// servesTLS reports whether the HTTP port serves TLS: with peer
// certificates or a client certificate.
func (a *Auth) servesTLS() bool { return a.mode == ModeTLS || a.clientCert != nil }

// Scheme is "https" when the HTTP port serves TLS, else "http".
func (a *Auth) Scheme() string {
	if a.servesTLS() {
		return "https"
	}
	return "http"
}

// URL is the base URL of the member whose HTTP port is hostport
// ("host:port"), with no trailing slash.
func (a *Auth) URL(hostport string) string { return a.Scheme() + "://" + hostport }

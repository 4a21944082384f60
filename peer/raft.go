package peer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftMagic opens the server's side of the cluster-key handshake, so a
// client that reached something else says so instead of timing out.
const raftMagic = "BPRAFTK1"

// raftNonceLen is the size of each side's challenge.
const raftNonceLen = 32

// RaftStreamLayer wraps ln, the Raft listener, in member authentication.
// advertise, when not nil, is the address reported as the layer's Addr
// (what other members dial); otherwise ln's address is.
//
//   - ModeTLS: accepted connections must present a certificate that chains
//     to the peer CA; dialled members must too (chain only, no host name
//     check: the peer CA must be dedicated to the cluster).
//   - ModeKey: both sides prove the cluster key when a connection opens,
//     by a challenge–response that never sends the key. This
//     authenticates but does not encrypt: on untrusted networks use TLS.
//   - ModeNone: plain TCP.
//
// Accept never blocks on a peer: the server side of the handshake runs on
// the first Read or Write of the accepted connection (within 5 s); a peer
// that fails it gets its connection closed, a warning is logged with its
// address, and nothing it sent reaches Raft.
func (a *Auth) RaftStreamLayer(ln net.Listener, advertise net.Addr) raft.StreamLayer {
	return &streamLayer{auth: a, ln: ln, advertise: advertise}
}

type streamLayer struct {
	auth      *Auth
	ln        net.Listener
	advertise net.Addr
}

// Accept implements net.Listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	switch s.auth.mode {
	case ModeTLS:
		tc := tls.Server(c, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return s.auth.peerServerConfig(), nil
			},
		})
		return newLazyConn(tc, s.auth, tc.Handshake), nil
	case ModeKey:
		return newLazyConn(c, s.auth, func() error { return serverKeyHandshake(c, s.auth.raftKeys) }), nil
	}
	return c, nil
}

// Close implements net.Listener.
func (s *streamLayer) Close() error { return s.ln.Close() }

// Addr implements net.Listener: the advertised address if any.
func (s *streamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

// Dial implements raft.StreamLayer: it connects and authenticates within
// timeout.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	var hs func() error
	switch s.auth.mode {
	case ModeTLS:
		tc := tls.Client(c, s.auth.peerClientConfig())
		c, hs = tc, tc.Handshake
	case ModeKey:
		hs = func() error { return clientKeyHandshake(c, s.auth.raftKeys) }
	default:
		return c, nil
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := hs(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft connection to %s (%s): %w", address, s.auth.mode, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// raftProof is one side's proof of the Raft sub-key over both challenges.
func raftProof(key []byte, role string, first, second []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write(first)
	m.Write(second)
	return m.Sum(nil)
}

// serverKeyHandshake: send magic and a challenge sn; read the client's
// challenge cn and its proof HMAC("client"‖sn‖cn) under any accepted key;
// answer with HMAC("server"‖cn‖sn) under the same key.
func serverKeyHandshake(c net.Conn, keys [][]byte) error {
	hello := make([]byte, len(raftMagic)+raftNonceLen)
	copy(hello, raftMagic)
	sn := hello[len(raftMagic):]
	_, _ = rand.Read(sn)
	if _, err := c.Write(hello); err != nil {
		return fmt.Errorf("send challenge: %w", err)
	}
	msg := make([]byte, raftNonceLen+sha256.Size)
	if _, err := io.ReadFull(c, msg); err != nil {
		return fmt.Errorf("read the client's proof: %w", err)
	}
	cn := msg[:raftNonceLen]
	var key []byte
	for _, k := range keys {
		if hmac.Equal(msg[raftNonceLen:], raftProof(k, "client", sn, cn)) {
			key = k
			break
		}
	}
	if key == nil {
		return errors.New("the client did not prove the cluster key")
	}
	if _, err := c.Write(raftProof(key, "server", cn, sn)); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	return nil
}

// clientKeyHandshake is the other side of serverKeyHandshake: it proves
// the first key and accepts the server's proof under any.
func clientKeyHandshake(c net.Conn, keys [][]byte) error {
	hello := make([]byte, len(raftMagic)+raftNonceLen)
	if _, err := io.ReadFull(c, hello); err != nil {
		return fmt.Errorf("read challenge: %w", err)
	}
	if string(hello[:len(raftMagic)]) != raftMagic {
		return errors.New("the server did not start the cluster-key handshake (is it running with -cluster-key?)")
	}
	sn := hello[len(raftMagic):]
	msg := make([]byte, raftNonceLen, raftNonceLen+sha256.Size)
	_, _ = rand.Read(msg)
	cn := msg[:raftNonceLen]
	msg = append(msg, raftProof(keys[0], "client", sn, cn)...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, proof); err != nil {
		return fmt.Errorf("read the server's proof (wrong cluster key?): %w", err)
	}
	for _, k := range keys {
		if hmac.Equal(proof, raftProof(k, "server", cn, sn)) {
			return nil
		}
	}
	return errors.New("the server did not prove the cluster key")
}

// lazyConn runs the server side of a handshake on its first Read or Write,
// so Raft's single-goroutine accept loop never waits on a peer. Deadlines
// the user sets are kept and applied once the handshake is over.
type lazyConn struct {
	net.Conn
	auth      *Auth
	handshake func() error

	once sync.Once
	err  error

	mu     sync.Mutex
	rd, wd time.Time // the user's deadlines
}

func newLazyConn(c net.Conn, a *Auth, handshake func() error) *lazyConn {
	return &lazyConn{Conn: c, auth: a, handshake: handshake}
}

func (c *lazyConn) init() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := c.handshake(); err != nil {
			_ = c.Conn.Close()
			c.auth.log.Warn("refused a raft connection: the peer did not authenticate",
				"remote", c.RemoteAddr().String(), "mode", c.auth.mode.String(), "error", err)
			c.err = fmt.Errorf("%w: raft connection from %s: %w", ErrUnauthenticated, c.RemoteAddr(), err)
			return
		}
		c.mu.Lock()
		rd, wd := c.rd, c.wd
		c.mu.Unlock()
		_ = c.Conn.SetReadDeadline(rd)
		_ = c.Conn.SetWriteDeadline(wd)
	})
	return c.err
}

// Read implements net.Conn, after the handshake.
func (c *lazyConn) Read(p []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write implements net.Conn, after the handshake.
func (c *lazyConn) Write(p []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline implements net.Conn.
func (c *lazyConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd, c.wd = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *lazyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn.
func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

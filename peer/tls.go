package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// http1 is the only protocol the HTTP port negotiates: WebSocket upgrades
// and the tunnel need HTTP/1.1.
var http1 = []string{"http/1.1"}

// HTTPTLSConfig is the TLS configuration of the HTTP port, or nil when the
// port is plain (no peer certificates and no client certificate).
//
// It picks by SNI on every handshake, with the current certificates: a
// ClientHello for ServerName gets the peer certificate and must present a
// member certificate (peer TLS only); any other gets the client
// certificate (-tls-cert) if set, else the peer certificate, and may
// present a member certificate but need not, so browsers need none.
func (a *Auth) HTTPTLSConfig() *tls.Config {
	if !a.servesTLS() {
		return nil
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         http1,
		GetConfigForClient: a.httpConfigFor,
	}
}

func (a *Auth) httpConfigFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if a.mode == ModeTLS && hello.ServerName == ServerName {
		c := a.peerServerConfig()
		c.NextProtos = http1
		return c, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: http1}
	if a.clientCert != nil {
		c.Certificates = []tls.Certificate{*a.clientCert.get().cert}
	} else {
		c.Certificates = []tls.Certificate{*a.peerCert.get().cert}
	}
	if a.mode == ModeTLS {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = a.peerCA.get().pool
	}
	return c, nil
}

// peerServerConfig is the server side of member mutual TLS (Raft, and the
// HTTP port under ServerName), with the current certificate and CA.
func (a *Auth) peerServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*a.peerCert.get().cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    a.peerCA.get().pool,
	}
}

// peerClientConfig is the client side of member mutual TLS: it presents
// the current peer certificate and accepts a server whose certificate
// chains to the current peer CA. The host name is deliberately not
// checked (members are dialled by address, and the certificate need not
// name it): that is why the peer CA must be dedicated to the cluster.
func (a *Auth) peerClientConfig() *tls.Config {
	kp, ca := a.peerCert.get(), a.peerCA.get()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.cert, nil
		},
		// The standard verification would check the host name; the chain
		// is checked in VerifyConnection instead, so this is not insecure.
		InsecureSkipVerify: true, //nolint:gosec // chain verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, ca.pool, x509.ExtKeyUsageServerAuth)
		},
	}
}

// dialConfig is the client TLS configuration for a member's HTTP port at
// host, or nil when the port is plain. With peer TLS it is the member
// configuration; when the port is HTTPS only because of -tls-cert, the
// server is verified the standard way (host name included) against the
// system roots plus the certificates in the -tls-cert file.
func (a *Auth) dialConfig(host string) *tls.Config {
	switch {
	case a.mode == ModeTLS:
		c := a.peerClientConfig()
		c.NextProtos = http1
		return c
	case a.clientCert != nil:
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: host,
			RootCAs:    a.clientCert.get().roots,
			NextProtos: http1,
		}
	}
	return nil
}

// verifyChain checks that certs (leaf first, then intermediates) chain to
// a CA in pool for usage.
func verifyChain(certs []*x509.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(verifyOptions(pool, inter, usage)); err != nil {
		return fmt.Errorf("certificate %q is not signed by the peer CA: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}

func verifyOptions(roots, inter *x509.CertPool, usage x509.ExtKeyUsage) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
}

// intermediates parses the DER certificates after the leaf of a chain.
func intermediates(ders [][]byte) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range ders {
		if c, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

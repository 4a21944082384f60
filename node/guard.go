package node

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/backplane/backplane/peer"
)

// Guards of the endpoints that are not for browsers: the admin API, pprof,
// the server REST API and the node-to-node endpoints. docs/security.md
// says who may reach what.

// errMisdirected answers 421: a loopback-only endpoint reached under a
// Host that is not loopback (DNS rebinding, or a reverse proxy).
var errMisdirected = errors.New("misdirected request")

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostIsLoopback reports whether a Host header names localhost or a
// loopback address. A DNS-rebinding page reaches 127.0.0.1 under its own
// name, and a reverse proxy passes the public name: neither is loopback.
func hostIsLoopback(hostHeader string) bool {
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fromLoopbackDirectly reports whether r comes from a process on this
// machine that addressed the node as loopback, not through a proxy.
func fromLoopbackDirectly(r *http.Request) error {
	if !isLoopback(r.RemoteAddr) {
		return fmt.Errorf("%w: accepted only from loopback when no -admin-token is set", errForbidden)
	}
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" {
		return fmt.Errorf("%w: a proxied request is not a loopback client; set -admin-token", errForbidden)
	}
	if !hostIsLoopback(r.Host) {
		return fmt.Errorf("%w: Host %q is not loopback (a loopback client must address the node as localhost or 127.0.0.1)", errMisdirected, r.Host)
	}
	return nil
}

// crossOrigin reports whether a browser sent r from another origin. Such
// requests never reach the REST, admin, pprof or internal endpoints,
// whatever -allowed-origins says (it is for /hubs and the native streams).
// A page served under a rebinding name passes an Origin check, which is
// why loopback admin also checks Host.
func crossOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// noBrowsers refuses cross-origin browser requests. Clients that send no
// Origin (curl, SDKs, other nodes) are unaffected.
func noBrowsers(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if crossOrigin(r) {
			writeError(w, r, fmt.Errorf("%w: cross-origin browser requests are not served here (Origin %q)", errForbidden, r.Header.Get("Origin")))
			return
		}
		h(w, r)
	}
}

// requireAdmin guards the admin and debug endpoints: an authenticated
// member (a request forwarded by another node), or the -admin-token as a
// bearer token (401 without, 403 when wrong); without a token, a loopback
// client that addressed the node as loopback.
func (n *Node) requireAdmin(h http.HandlerFunc) http.HandlerFunc {
	return noBrowsers(func(w http.ResponseWriter, r *http.Request) {
		if err := n.checkAdmin(r); err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r)
	})
}

func (n *Node) checkAdmin(r *http.Request) error {
	if n.verifyPeer(r) == nil {
		return nil
	}
	if n.cfg.AdminToken == "" {
		return fromLoopbackDirectly(r)
	}
	tok, ok := bearerToken(r)
	if !ok {
		return fmt.Errorf("%w: admin token required (Authorization: Bearer <token>)", errUnauthorized)
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(n.cfg.AdminToken)) != 1 {
		return fmt.Errorf("%w: wrong admin token", errForbidden)
	}
	return nil
}

// requirePeer guards the node-to-node endpoints: only an authenticated
// member (mutual TLS or the cluster key), never a client and not the admin
// token alone. Without member authentication (every port on loopback, or
// -insecure-cluster) a loopback caller that addressed the node as
// loopback is taken for a member, and with -insecure-cluster so is a
// caller with the admin token.
func (n *Node) requirePeer(h http.HandlerFunc) http.HandlerFunc {
	return noBrowsers(func(w http.ResponseWriter, r *http.Request) {
		err := n.verifyPeer(r)
		if errors.Is(err, peer.ErrNoPeerAuth) {
			err = fromLoopbackDirectly(r)
			if err != nil && n.cfg.InsecureCluster && n.cfg.AdminToken != "" {
				err = n.checkAdmin(r)
			}
		} else if err != nil {
			err = fmt.Errorf("%w: node-to-node endpoint: %w", errForbidden, err)
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r)
	})
}

// verifyPeer reports whether r comes from an authenticated member; an
// error wrapping peer.ErrNoPeerAuth says members do not authenticate.
func (n *Node) verifyPeer(r *http.Request) error {
	return n.peers.Verify(r)
}

package signalr

import (
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// forward relays a transport request to the node holding the connection:
// SSE streams and long polls through a reverse proxy that flushes as
// responses come, WebSocket upgrades through a TCP tunnel (tunnel.go).
// When the holder cannot be reached and unreachable is set, it serves the
// request instead (a stateful connection resumes here).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, holder string, unreachable http.HandlerFunc) {
	base, ok := s.cluster.NodeURL(holder)
	if !ok {
		if unreachable != nil {
			unreachable(w, r)
			return
		}
		http.Error(w, "No Connection with that ID (its node is not a member)", http.StatusNotFound)
		return
	}
	target, err := url.Parse(base)
	if err != nil {
		http.Error(w, "bad member address", http.StatusBadGateway)
		return
	}
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && target.Scheme == "http" {
		s.tunnelWebSocket(w, r, target, holder, unreachable)
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path, pr.Out.URL.RawPath = r.URL.Path, r.URL.RawPath
			pr.Out.Host = r.Host
			pr.Out.Header.Set(forwardedHeader, s.cluster.NodeID())
			pr.SetXForwarded()
		},
		FlushInterval: -1,
		Transport:     forwardTransport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("forward to holder failed", "holder", holder, "err", err)
			var op *net.OpError
			if unreachable != nil && errors.As(err, &op) && op.Op == "dial" {
				unreachable(w, r)
				return
			}
			http.Error(w, "No Connection with that ID (its node is unreachable)", http.StatusNotFound)
		},
	}
	proxy.ServeHTTP(w, r)
}

// forwardTransport dials holders with a short timeout: a resume whose
// holder vanished is taken over here instead of waiting out a long dial.
var forwardTransport = &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 64,
	IdleConnTimeout:     90 * time.Second,
}

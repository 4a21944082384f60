package signalr

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
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
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
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
			s.peers.Sign(pr.Out, nil)
		},
		FlushInterval: -1,
		Transport:     s.peers.Client().Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("forward to holder failed", "holder", holder, "err", err)
			if unreachable != nil && s.peers.IsDialError(err) {
				unreachable(w, r)
				return
			}
			http.Error(w, "No Connection with that ID (its node is unreachable)", http.StatusNotFound)
		},
	}
	proxy.ServeHTTP(w, r)
}

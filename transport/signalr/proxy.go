package signalr

import (
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// forward relays a transport request to the node holding the connection:
// WebSocket upgrades, SSE streams and long polls alike (responses are
// flushed as they come).
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

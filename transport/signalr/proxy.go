package signalr

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// forward relays a transport request to the node holding the connection:
// WebSocket upgrades, SSE streams and long polls alike (responses are
// flushed as they come).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, holder string) {
	base, ok := s.cluster.NodeURL(holder)
	if !ok {
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
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Debug("forward to holder failed", "holder", holder, "err", err)
			http.Error(w, "No Connection with that ID (its node is unreachable)", http.StatusNotFound)
		},
	}
	proxy.ServeHTTP(w, r)
}

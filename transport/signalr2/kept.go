package signalr2

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
)

// keptRequest is what a WebSocket keeps of its upgrade request for its
// life: what the Application (the query) and a re-authentication (the
// header Authenticate reads, the query, the addresses, TLS) read. It is a
// copy, a fraction of the request's size: the request line with its
// connection token (which the connection no longer needs), the rest of
// the header and the request's context are let go.
type keptRequest struct {
	path, query      string // the query without the connection token
	header           http.Header
	host, remoteAddr string
	tls              *tls.ConnectionState
}

// keepRequest copies what a WebSocket keeps of r, with header as its
// header (see keptHeaders).
func keepRequest(r *http.Request, header http.Header) *keptRequest {
	q := r.URL.Query()
	q.Del("connectionToken")
	// Clones: the path is a piece of the request line, the host may be.
	return &keptRequest{path: strings.Clone(r.URL.Path), query: q.Encode(), header: header,
		host: strings.Clone(r.Host), remoteAddr: r.RemoteAddr, tls: r.TLS}
}

// request rebuilds a GET request from what was kept, for Authenticate.
func (k *keptRequest) request() *http.Request {
	u := &url.URL{Path: k.path, RawQuery: k.query}
	return &http.Request{Method: http.MethodGet, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: k.header, Host: k.host, RemoteAddr: k.remoteAddr, RequestURI: u.RequestURI(), TLS: k.tls}
}

// keptHeaders is what a WebSocket keeps of its upgrade request's header:
// none without Authenticate, the AuthHeaders present (nil when none is),
// or, without AuthHeaders, all of it. An upgrade request's header is most
// of what an idle socket would otherwise keep of its request.
func (s *Server) keptHeaders(h http.Header) http.Header {
	switch {
	case s.opts.Authenticate == nil:
		return nil
	case s.opts.AuthHeaders == nil:
		return h
	}
	var kept http.Header
	for _, name := range s.opts.AuthHeaders {
		if v, ok := h[http.CanonicalHeaderKey(name)]; ok {
			if kept == nil {
				kept = make(http.Header, len(s.opts.AuthHeaders))
			}
			kept[http.CanonicalHeaderKey(name)] = v
		}
	}
	return kept
}

package signalr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
)

type availableTransport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

var allTransports = []availableTransport{
	{Transport: transportWebSockets, TransferFormats: []string{"Text", "Binary"}},
	{Transport: transportSSE, TransferFormats: []string{"Text"}},
	{Transport: transportLongPolling, TransferFormats: []string{"Text", "Binary"}},
}

type negotiateResponse struct {
	ConnectionID        string               `json:"connectionId"`
	ConnectionToken     string               `json:"connectionToken,omitempty"`
	NegotiateVersion    int                  `json:"negotiateVersion"`
	AvailableTransports []availableTransport `json:"availableTransports"`
	// UseStatefulReconnect is set only when the client asked for it: the
	// JS client fails the negotiation when a server offers it unasked.
	UseStatefulReconnect bool `json:"useStatefulReconnect,omitempty"`
}

// serveNegotiate answers POST /hubs/{hub}/negotiate: a new connection held
// by this node, with negotiate v1 (id and secret token) or v0 (one id).
// Stateful reconnect is offered when the client asks for it.
func (s *Server) serveNegotiate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "negotiate takes POST", http.StatusMethodNotAllowed)
		return
	}
	hub := CanonicalHub(r.PathValue("hub"))
	if err := fsm.ValidateHub(hub); err != nil {
		http.Error(w, fmt.Sprintf("no hub %q: %v", hub, err), http.StatusNotFound)
		return
	}
	id, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	version := 0
	if v := queryValue(r.URL.Query(), "negotiateVersion"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			writeNegotiateJSON(w, map[string]string{"error": fmt.Sprintf("The client requested an invalid protocol version '%s'", v)})
			return
		case n < 0:
			writeNegotiateJSON(w, map[string]string{"error": fmt.Sprintf("The client requested version '%d', but the server does not support this version.", n)})
			return
		}
		version = min(n, 1)
	}
	release, err := s.opts.ConnLimit.Acquire(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	c := s.newConn(hub, randomID(), s.newToken(), id)
	c.limits.release = release // given back when the connection ends
	if !s.admit(w, r, c) {
		release()
		return
	}
	resp := negotiateResponse{ConnectionID: c.id, NegotiateVersion: version, AvailableTransports: allTransports}
	if version >= 1 {
		resp.ConnectionToken = c.token
	} else {
		// v0 clients send the connection id as the token.
		c.id = c.token
		resp.ConnectionID = c.id
	}
	if strings.EqualFold(queryValue(r.URL.Query(), "useStatefulReconnect"), "true") {
		c.statefulOffered, resp.UseStatefulReconnect = true, true
	}
	s.addPending(c)
	writeNegotiateJSON(w, resp)
}

func writeNegotiateJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// queryValue reads a query parameter, matching its name case-insensitively
// as ASP.NET does.
func queryValue(q url.Values, name string) string {
	if v := q.Get(name); v != "" {
		return v
	}
	for k, v := range q {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// authenticateAs authenticates a request that takes up an existing
// connection: its token must name the connection's user. A refusal is
// answered here: false.
func (s *Server) authenticateAs(w http.ResponseWriter, r *http.Request, user string) (Identity, bool) {
	id, ok := s.authenticate(w, r)
	if !ok {
		return Identity{}, false
	}
	if s.opts.Authenticate != nil && id.UserID != user {
		http.Error(w, "the token names another user than the connection's", http.StatusUnauthorized)
		return Identity{}, false
	}
	return id, true
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	if s.opts.Authenticate == nil {
		return Identity{}, true
	}
	id, err := s.opts.Authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return Identity{}, false
	}
	return id, true
}

// cors answers preflights and adds CORS headers for allowed origins, with
// credentials (the SignalR JS client sends cookies by default).
func (s *Server) cors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.originAllowed(r)
		if allowed {
			hdr := w.Header()
			hdr.Set("Access-Control-Allow-Origin", origin)
			hdr.Set("Access-Control-Allow-Credentials", "true")
			hdr.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			if origin == "" {
				// Not a preflight: as an ASP.NET route that maps no OPTIONS.
				w.Header().Set("Allow", allowedMethods(r))
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			if !allowed {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			hdr := w.Header()
			hdr.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			hdr.Set("Access-Control-Allow-Headers", "authorization, content-type, x-requested-with, x-signalr-user-agent")
			hdr.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if skipsNegotiation(r) {
			s.serveCounted(w, r, h)
			return
		}
		h(w, r)
	}
}

// allowedMethods lists the methods a route maps: negotiate takes POST,
// the transport route GET, POST and DELETE.
func allowedMethods(r *http.Request) string {
	if strings.HasSuffix(r.URL.Path, "/negotiate") {
		return "POST"
	}
	return "GET, POST, DELETE"
}

// originAllowed: no Origin header (non-browser), the same host, or a
// configured origin.
func (s *Server) originAllowed(r *http.Request) bool {
	return access.OriginAllowed(r, s.opts.AllowedOrigins)
}

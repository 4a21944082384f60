package signalr

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/backplane/backplane/fsm"
)

// forwardedHeader marks a request already forwarded to a holder, so a stale
// view of the cluster can never bounce it around.
const forwardedHeader = "Backplane-Forwarded-Connection"

// serveHub routes a transport request on /hubs/{hub}?id=<token>: a
// WebSocket upgrade, an SSE stream, a long poll, a send (POST) or the end
// of a long-polling connection (DELETE). A request for a connection held
// by another node is forwarded there.
func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		// The route maps these three only, as ASP.NET's.
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hub := CanonicalHub(r.PathValue("hub"))
	if err := fsm.ValidateHub(hub); err != nil {
		http.Error(w, "no such hub: "+err.Error(), http.StatusNotFound)
		return
	}
	token := r.URL.Query().Get("id")
	isUpgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if token == "" {
		if r.Method == http.MethodGet && isUpgrade {
			s.serveWebSocket(w, r, nil) // skipNegotiation: a connection on the spot
			return
		}
		http.Error(w, "Connection ID required", http.StatusBadRequest)
		return
	}
	c := s.lookup(token)
	if c == nil {
		if r.Method == http.MethodGet && isUpgrade {
			if state, ok, err := s.cluster.StatefulByToken(tokenHash(token)); err == nil && ok {
				s.resumeElsewhere(w, r, token, state)
				return
			}
		}
		if holder := holderOf(token); holder != "" && holder != s.cluster.NodeID() && !s.relayed(r) {
			s.forward(w, r, holder, nil)
			return
		}
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	isSSE := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	isPoll := r.Method == http.MethodGet && !isUpgrade && !isSSE
	if c.hub != hub {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	if !s.authenticateLater(w, r, c) {
		return
	}
	// An ended connection is gone, except to the long poll that learns how
	// it ended and, as in ASP.NET, to the DELETE a client sends after the
	// poll that delivered the server's Close: it stays, inactive, until
	// then (202).
	if c.isDone() && !isPoll {
		if r.Method == http.MethodDelete && c.transportName() == transportLongPolling {
			s.forget(c)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case isUpgrade:
			s.serveWebSocket(w, r, c)
		case isSSE:
			s.serveSSE(w, r, c)
		default:
			s.serveLongPoll(w, r, c)
		}
	case http.MethodPost:
		s.serveSend(w, r, c)
	case http.MethodDelete:
		if c.transportName() != transportLongPolling {
			http.Error(w, "Cannot terminate this connection using the DELETE endpoint.", http.StatusBadRequest)
			return
		}
		c.end("", false, "client sent DELETE")
		w.WriteHeader(http.StatusAccepted)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// authenticateLater checks a later request of a connection (its
// WebSocket upgrade, SSE stream, polls, sends, DELETE) as ASP.NET checks
// each request of an [Authorize] hub: when clients are authenticated, it
// needs a valid token of the connection's user, or it is answered 401. A
// fresh token extends the connection's expiry.
func (s *Server) authenticateLater(w http.ResponseWriter, r *http.Request, c *conn) bool {
	if s.opts.Authenticate == nil {
		return true
	}
	id, ok := s.authenticate(w, r)
	if !ok {
		return false
	}
	if id.UserID != c.tokenUser {
		w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
		http.Error(w, "the access token is not the connection's user's", http.StatusUnauthorized)
		return false
	}
	c.extendExpiry(id.Expires)
	return true
}

// CanonicalHub is a hub name's canonical form. Hub names are
// case-insensitive, as ASP.NET Core routes them: /hubs/Chat and /hubs/chat
// are one hub, recorded in the log as "chat" (ASCII letters in lower case;
// a valid hub name holds no others).
func CanonicalHub(hub string) string {
	for i := 0; i < len(hub); i++ {
		if c := hub[i]; c >= 'A' && c <= 'Z' {
			b := []byte(hub)
			for j, c := range b {
				if c >= 'A' && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return hub
}

// serveSend takes client data for SSE and long-polling connections.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request, c *conn) {
	switch c.transportName() {
	case transportWebSockets:
		http.Error(w, "POST requests are not allowed for WebSocket connections.", http.StatusMethodNotAllowed)
		return
	}
	if c.isDone() {
		http.Error(w, "No Connection with that ID", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(4*s.opts.MaxMessageSize+1024)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.end("Connection closed with an error: message too large", false, "message too large")
			http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if c.transportName() == "" {
		// Before the first transport request, as ASP.NET: kept until the
		// transport starts.
		if !c.receiveEarly(body) {
			http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	c.receive(body)
	w.WriteHeader(http.StatusOK)
}

// attachOrRefuse attaches the connection to a streaming transport, or
// answers why it cannot: 409 while another request uses it, 400 otherwise.
func (c *conn) attachOrRefuse(w http.ResponseWriter, transport string) bool {
	err := c.attach(transport)
	if err == nil {
		return true
	}
	status := http.StatusBadRequest
	if err == errConcurrent {
		status = http.StatusConflict
	}
	http.Error(w, err.Error(), status)
	return false
}

package signalr2

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The transports a client names with transport=.
const (
	transportWebSockets = "webSockets"
	transportSSE        = "serverSentEvents"
	transportLongPoll   = "longPolling"
)

// conn is a connection as one request names it: from its verified
// connection token, its connectionData and its client's identity.
type conn struct {
	id        string
	user      string
	hubs      []string // lower-case, from connectionData
	ident     Identity
	transport string
	req       *http.Request // the request that named it; nil once a WebSocket kept what it needs (kept)
	kept      *keptRequest
}

// maxFormBody bounds the form a poll or a send may carry.
const maxFormBody = 1 << 20

// openRequest reads and checks what every request of a connection
// carries: its token (400 when missing or invalid), its hubs, its
// client's identity (401/403), which must be the user the token was issued
// to (403), and the transport. It answers the error itself.
func (s *Server) openRequest(w http.ResponseWriter, r *http.Request) (*conn, bool) {
	q := r.URL.Query()
	c := &conn{req: r}
	switch t := q.Get("transport"); t {
	case transportWebSockets, transportSSE, transportLongPoll, "":
		c.transport = transportName(t) // not a piece of the request line, which a WebSocket would keep
	default:
		writeError(w, http.StatusBadRequest, errors.New("Protocol error: Unknown transport."))
		return nil, false
	}
	tok := q.Get("connectionToken")
	if tok == "" {
		writeError(w, http.StatusBadRequest, errors.New("Protocol error: Missing connection token."))
		return nil, false
	}
	t, err := s.conns.openConnectionToken(tok)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("Protocol error: Invalid connection token: %w", err))
		return nil, false
	}
	c.id, c.user = t.ConnID, t.User
	if c.hubs, err = parseConnectionData(q.Get("connectionData")); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, false
	}
	if c.ident, err = s.authenticate(r, c.hubs); err != nil {
		writeAuthError(w, err)
		return nil, false
	}
	if c.ident.UserID != c.user {
		writeError(w, http.StatusForbidden, errors.New("Forbidden: the connection token was issued to another user."))
		return nil, false
	}
	return c, true
}

// formValue reads a long poll's parameter from the query (the .NET
// client) or else from the form body (jQuery).
func formValue(w http.ResponseWriter, r *http.Request, name string) (string, error) {
	if v := r.URL.Query().Get(name); v != "" {
		return v, nil
	}
	if r.Method != http.MethodPost {
		return "", nil
	}
	if r.PostForm == nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			return "", fmt.Errorf("read the form: %w", err)
		}
	}
	return r.PostForm.Get(name), nil
}

// transportName is t as one of the constants ("" stays "").
func transportName(t string) string {
	for _, name := range []string{transportWebSockets, transportSSE, transportLongPoll} {
		if t == name {
			return name
		}
	}
	return ""
}

// request is what a re-authentication reads: the request in progress, or
// a WebSocket's upgrade as it was kept.
func (c *conn) request() *http.Request {
	if c.kept != nil {
		return c.kept.request()
	}
	return c.req
}

// query is the query of the request that named c (without the connection
// token for a WebSocket).
func (c *conn) query() url.Values {
	switch {
	case c.kept != nil:
		q, _ := url.ParseQuery(c.kept.query) // it was encoded from url.Values
		return q
	case c.req != nil:
		return c.req.URL.Query()
	}
	return nil
}

// hasHub reports whether the connection subscribed to hub.
func (c *conn) hasHub(hub string) bool { return slices.Contains(c.hubs, hub) }

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

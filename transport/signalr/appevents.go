package signalr

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/backplane/backplane/fsm"
)

// admit asks the Application whether a new connection may open (before its
// negotiate is answered, or its skip-negotiation WebSocket upgraded), and
// applies its Admission. A refusal is answered here: false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, c *conn) bool {
	app := s.opts.Application
	if app == nil {
		return true
	}
	c.rawQuery = r.URL.RawQuery
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ProposeTimeout)
	defer cancel()
	info := c.info()
	adm, err := app.Connect(ctx, &info)
	if err != nil {
		status, msg := refusalStatus(err)
		s.log.Debug("connection refused by the application", "conn", c.id, "hub", c.hub, "status", status, "err", err)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
		}
		http.Error(w, msg, status)
		return false
	}
	if adm.UserID != "" {
		if err := fsm.ValidateName("user", adm.UserID); err != nil {
			s.log.Warn("the application's user id for a connection is invalid", "conn", c.id, "err", err)
			http.Error(w, "the application gave an invalid user id", http.StatusInternalServerError)
			return false
		}
		c.user = adm.UserID
	}
	for _, g := range adm.Groups {
		if err := fsm.ValidateName("group", g); err != nil {
			s.log.Warn("the application's group for a connection is invalid", "conn", c.id, "err", err)
			http.Error(w, "the application gave an invalid group name", http.StatusInternalServerError)
			return false
		}
	}
	c.admitGroups = adm.Groups
	return true
}

// clientQuery is a client's query string as the Application sees it:
// without its access token. Malformed pairs are dropped, as
// (*url.URL).Query drops them.
func clientQuery(raw string) url.Values {
	q, _ := url.ParseQuery(raw)
	for k := range q {
		if strings.EqualFold(k, "access_token") {
			delete(q, k)
		}
	}
	return q
}

// joinAdmitted joins the groups the Application admitted a connection to,
// once its open is committed and before the client is told it is open.
func (c *conn) joinAdmitted(ctx context.Context) error {
	if len(c.admitGroups) == 0 {
		return nil
	}
	relays := make([]Relay, len(c.admitGroups))
	for i, g := range c.admitGroups {
		relays[i] = Relay{Op: JoinGroup, Name: g}
	}
	res, err := c.srv.cluster.Relay(ctx, c.hub, c.id, relays)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// tellConnected tells the Application a connection is open.
func (c *conn) tellConnected() {
	if app := c.srv.opts.Application; app != nil {
		c.appTold.Store(true)
		app.Connected(c.info())
	}
}

// tellDisconnected tells the Application that this node committed a
// connection's close; errMsg is the error the client was given, if any.
func (c *conn) tellDisconnected() {
	app := c.srv.opts.Application
	if app == nil || !c.appTold.Load() {
		return
	}
	c.mu.Lock()
	errMsg := c.closeError
	c.mu.Unlock()
	app.Disconnected(c.info(), errMsg)
}

// closeOutcomeTells reports whether a close proposal's outcome means the
// close may be committed (the Application is told; at least once): a
// rejection means another node holds the connection or closed it.
func closeOutcomeTells(err error) bool {
	return !errors.Is(err, ErrRejected)
}

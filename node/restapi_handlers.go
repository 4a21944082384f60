package node

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/backplane/backplane/fsm"
)

// The handlers of the versioned API that have no v1 counterpart.

// apiHealth answers HEAD /api/health: 200 when this node is ready (caught
// up with the leader), 503 otherwise.
func (n *Node) apiHealth(w http.ResponseWriter, r *http.Request) {
	if why := n.notReady(); why != "" {
		writeError(w, r, errNotReady(why))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// errNotReady is a 503 that says why.
func errNotReady(why string) error { return &notReadyError{why} }

type notReadyError struct{ why string }

func (e *notReadyError) Error() string { return "this node is not ready: " + e.why }
func (e *notReadyError) Unwrap() error { return ErrNoLeader }

// apiAccessKey answers GET /api/auth/accessKey: the key that signs client
// tokens, to a caller that proved it holds it (a token signed with it for
// this very URL). Without -access-key there is none: 404.
func (n *Node) apiAccessKey(w http.ResponseWriter, r *http.Request) {
	if n.cfg.AccessKey == "" {
		writeError(w, r, errNotFoundf("this node has no -access-key"))
		return
	}
	sum := sha256.Sum256([]byte(n.cfg.AccessKey))
	writeJSON(w, http.StatusOK, map[string]string{"AccessKey": n.cfg.AccessKey, "KeyId": hex.EncodeToString(sum[:8])})
}

// apiAddUserToGroup adds a user to a group, for good or for ttl seconds;
// ttl=0 adds the user's connections that are open now instead.
func (n *Node) apiAddUserToGroup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("ttl") {
		n.userGroupChange(true)(w, r)
		return
	}
	ttl, err := strconv.ParseUint(q.Get("ttl"), 10, 32)
	if err != nil || ttl > fsm.MaxGroupTTL {
		writeError(w, r, errBadRequestf("ttl must be a whole number of seconds from 0 to %d", fsm.MaxGroupTTL))
		return
	}
	m := &fsm.UserGroupTTL{Hub: r.PathValue("hub"), Group: r.PathValue("group"), User: r.PathValue("user"), TTL: ttl}
	if err := fsm.ValidateUserGroupTTL(m); err != nil {
		writeError(w, r, err)
		return
	}
	n.commit(w, r, fsm.EncodeUserGroupTTL(m))
}

// apiRemoveConnectionFromAllGroups removes a connection from every group
// of the hub.
func (n *Node) apiRemoveConnectionFromAllGroups(w http.ResponseWriter, r *http.Request) {
	n.removeFromAllGroups(w, r, fsm.MemberConnection, r.PathValue("connectionId"))
}

// apiCloseConnections closes the connections of a hub, of a group or of a
// user (by the path), except the excluded ones, with a reason. The state
// machine selects them when it applies the command, and closes them as a
// DELETE of one connection does; the nodes that hold them end them.
func (n *Node) apiCloseConnections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	x := &fsm.Execute{Hub: r.PathValue("hub"), Group: r.PathValue("group"), User: r.PathValue("user"), Excluded: q["excluded"],
		Actions: []fsm.ExecAction{{Kind: fsm.ExecClose, Reason: q.Get("reason")}}}
	if err := fsm.ValidateExecute(x); err != nil {
		writeError(w, r, err)
		return
	}
	n.commit(w, r, fsm.EncodeExecute(x))
}

// execCommand is one command of an :execute body.
type execCommand struct {
	Type    string    `json:"type"`
	Message *sendBody `json:"message"`
	Group   string    `json:"group"`
	Reason  string    `json:"reason"`
}

// apiExecute runs the body's commands (SendMessage, JoinGroup, LeaveGroup,
// CloseConnection), in order, on the connections of the hub that the
// filter selects (all of them without one), as one command of the log.
// It answers 202 with the index of the last message sent, 0 when none.
func (n *Node) apiExecute(w http.ResponseWriter, r *http.Request) {
	x, err := n.parseExecute(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := n.proposer.ProposeOne(r.Context(), fsm.EncodeExecute(x))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if res.Index > 0 {
		w.Header().Set("Backplane-Index", strconv.FormatUint(res.Index, 10))
	}
	writeJSON(w, http.StatusAccepted, map[string]uint64{"index": res.Index})
}

func (n *Node) parseExecute(w http.ResponseWriter, r *http.Request) (*fsm.Execute, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxRESTBody))
	if err != nil {
		return nil, err
	}
	var cmds []execCommand
	if err := json.Unmarshal(raw, &cmds); err != nil {
		return nil, errBadRequestf("the body must be a JSON array of commands: %v", err)
	}
	x := &fsm.Execute{Hub: r.PathValue("hub"), Filter: r.URL.Query().Get("filter")}
	for i, c := range cmds {
		var a fsm.ExecAction
		switch {
		case strings.EqualFold(c.Type, "SendMessage"):
			if c.Message == nil {
				return nil, errBadRequestf("command %d: SendMessage needs a message", i)
			}
			args, err := sendArguments(c.Message.Arguments)
			if err != nil {
				return nil, err
			}
			a = fsm.ExecAction{Kind: fsm.ExecSend, Target: c.Message.Target, Arguments: args}
		case strings.EqualFold(c.Type, "JoinGroup"):
			a = fsm.ExecAction{Kind: fsm.ExecJoin, Group: c.Group}
		case strings.EqualFold(c.Type, "LeaveGroup"):
			a = fsm.ExecAction{Kind: fsm.ExecLeave, Group: c.Group}
		case strings.EqualFold(c.Type, "CloseConnection"):
			a = fsm.ExecAction{Kind: fsm.ExecClose, Reason: c.Reason}
		default:
			return nil, errBadRequestf("command %d: unknown type %q (SendMessage, JoinGroup, LeaveGroup or CloseConnection)", i, c.Type)
		}
		x.Actions = append(x.Actions, a)
	}
	if err := fsm.ValidateExecute(x); err != nil {
		return nil, err
	}
	return x, nil
}

// Client tokens that :generateToken signs.
const (
	defaultTokenMinutes = 60
	userClaimDefault    = "nameid"
)

// apiGenerateToken signs a client token for the hub with the node's access
// key (HS256, as the nodes verify client tokens): the user id in the first
// configured user claim, bound to the hub, expiring after minutesToExpire
// (default 60), with -jwt-audience and -jwt-issuer when configured.
func (n *Node) apiGenerateToken(w http.ResponseWriter, r *http.Request) {
	if n.cfg.AccessKey == "" {
		writeError(w, r, errBadRequestf("this node has no -access-key to sign client tokens with; the issuer of the tokens it verifies signs them"))
		return
	}
	hub := r.PathValue("hub")
	if err := fsm.ValidateHub(hub); err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	minutes := int64(defaultTokenMinutes)
	if s := q.Get("minutesToExpire"); s != "" {
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil || v < 1 {
			writeError(w, r, errBadRequestf("minutesToExpire must be a whole number from 1 to %d", math.MaxInt32))
			return
		}
		minutes = v
	}
	now := time.Now()
	claims := jwt.MapClaims{
		hubClaim: hub,
		"iat":    now.Unix(),
		"nbf":    now.Unix(),
		"exp":    now.Add(time.Duration(minutes) * time.Minute).Unix(),
	}
	if user := q.Get("userId"); user != "" {
		if err := fsm.ValidateName("user", user); err != nil {
			writeError(w, r, err)
			return
		}
		claim := userClaimDefault
		if len(n.cfg.UserClaims) > 0 {
			claim = n.cfg.UserClaims[0]
		}
		claims[claim] = user
	}
	if n.cfg.JWTAudience != "" {
		claims["aud"] = n.cfg.JWTAudience
	}
	if n.cfg.JWTIssuer != "" {
		claims["iss"] = n.cfg.JWTIssuer
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(n.cfg.AccessKey))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// Paging of the presence list.
const (
	maxPageSize     = 200
	defaultPageSize = 200
)

// pageToken is what a continuationToken carries: the last connection id
// returned and how many the caller's top still allows (0: no limit).
type pageToken struct {
	After string `json:"a"`
	Left  int64  `json:"n,omitempty"`
}

// groupMember is one entry of the presence list.
type groupMember struct {
	ConnectionID string `json:"connectionId"`
	UserID       string `json:"userId,omitempty"`
}

// apiListGroupConnections answers GET .../groups/{group}/connections: the
// open connections in the group (directly or through their user), by
// connection id, maxpagesize (1-200, default 200) per page, at most top
// in all, with nextLink (carrying continuationToken) while more remain.
func (n *Node) apiListGroupConnections(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	hub, err := n.pathHubAnd(r, "group", group)
	if err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	size := int64(defaultPageSize)
	if s := q.Get("maxpagesize"); s != "" {
		if size, err = strconv.ParseInt(s, 10, 32); err != nil || size < 1 || size > maxPageSize {
			writeError(w, r, errBadRequestf("maxpagesize must be from 1 to %d", maxPageSize))
			return
		}
	}
	var tok pageToken
	if s := q.Get("continuationToken"); s != "" {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || json.Unmarshal(raw, &tok) != nil || tok.After == "" || tok.Left < 0 {
			writeError(w, r, errBadRequestf("invalid continuationToken"))
			return
		}
	} else if s := q.Get("top"); s != "" {
		if tok.Left, err = strconv.ParseInt(s, 10, 32); err != nil || tok.Left < 1 {
			writeError(w, r, errBadRequestf("top must be from 1 to %d", math.MaxInt32))
			return
		}
	}
	limit := size
	if tok.Left > 0 {
		limit = min(limit, tok.Left)
	}
	conns, more, err := n.fsm.GroupConnections(hub, group, tok.After, int(limit))
	if err != nil {
		writeError(w, r, err)
		return
	}
	page := struct {
		Value    []groupMember `json:"value"`
		NextLink string        `json:"nextLink,omitempty"`
	}{Value: make([]groupMember, 0, len(conns))}
	for _, c := range conns {
		page.Value = append(page.Value, groupMember{ConnectionID: c.ConnID, UserID: c.UserID})
	}
	next := pageToken{Left: tok.Left}
	if next.Left > 0 {
		next.Left -= int64(len(conns))
	}
	if more && len(conns) > 0 && (tok.Left == 0 || next.Left > 0) {
		next.After = conns[len(conns)-1].ConnID
		page.NextLink = nextLink(r, next)
	}
	writeJSON(w, http.StatusOK, page)
}

// nextLink is the request's absolute URL with the continuation token of
// the next page (and no top: the token carries what is left of it).
func nextLink(r *http.Request, tok pageToken) string {
	raw, _ := json.Marshal(tok) // a struct of a string and an int: it cannot fail
	q := r.URL.Query()
	q.Del("top")
	q.Set("continuationToken", base64.RawURLEncoding.EncodeToString(raw))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath() + "?" + q.Encode()
}

package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/backplane/backplane/fsm"
)

// The server REST API: the paths and bodies of Azure SignalR Service's
// data-plane REST API v1, so existing callers port unchanged.
func (n *Node) restRoutes(mux *http.ServeMux) {
	const hub = "/api/v1/hubs/{hub}"
	routes := []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"POST " + hub, n.sendToAll},
		{"POST " + hub + "/groups/{group}", n.sendToGroup},
		{"POST " + hub + "/users/{user}", n.sendToUser},
		{"POST " + hub + "/connections/{connectionId}", n.sendToConnection},
		{"DELETE " + hub + "/connections/{connectionId}", n.closeConnection},
		{"HEAD " + hub + "/connections/{connectionId}", n.connectionExists},
		{"HEAD " + hub + "/groups/{group}", n.groupExists},
		{"HEAD " + hub + "/users/{user}", n.userExists},
		{"PUT " + hub + "/groups/{group}/connections/{connectionId}", n.connectionGroupChange(true)},
		{"DELETE " + hub + "/groups/{group}/connections/{connectionId}", n.connectionGroupChange(false)},
		{"PUT " + hub + "/groups/{group}/users/{user}", n.userGroupChange(true)},
		{"DELETE " + hub + "/groups/{group}/users/{user}", n.userGroupChange(false)},
		{"HEAD " + hub + "/groups/{group}/users/{user}", n.userInGroup},
		{"DELETE " + hub + "/users/{user}/groups", n.removeUserFromAllGroups},
	}
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, n.requireAccess(rt.h))
	}
	n.restAPIRoutes(mux) // the versioned API (restapi.go) shares these handlers
}

// IdempotencyKeyHeader names the optional header that makes a retried
// publish return the original index instead of appending twice.
const IdempotencyKeyHeader = "Idempotency-Key"

const maxIdempotencyKeyLen = 256

// sendBody is the body of a REST send.
type sendBody struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

// parseSend reads and checks a send body within the REST size limit.
func (n *Node) parseSend(w http.ResponseWriter, r *http.Request, p *fsm.Publish) error {
	p.Hub = r.PathValue("hub")
	if err := fsm.ValidateHub(p.Hub); err != nil {
		return err
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxRESTBody))
	if err != nil {
		return err
	}
	var body sendBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return errBadRequestf("malformed JSON body: %v", err)
	}
	args, err := sendArguments(body.Arguments)
	if err != nil {
		return err
	}
	p.Target, p.Arguments = body.Target, args
	if key := r.Header.Get(IdempotencyKeyHeader); key != "" {
		if len(key) > maxIdempotencyKeyLen {
			return errBadRequestf("%s is longer than %d bytes", IdempotencyKeyHeader, maxIdempotencyKeyLen)
		}
		p.IdempotencyKey = p.Hub + "\x00" + key
	}
	return fsm.ValidatePublish(p)
}

// sendArguments checks a send's "arguments" and compacts them: a JSON
// array, and a missing or null one is [].
func sendArguments(raw json.RawMessage) ([]byte, error) {
	args := bytes.TrimSpace(raw)
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = []byte("[]")
	}
	if args[0] != '[' {
		return nil, errBadRequestf(`"arguments" must be a JSON array`)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, args); err != nil {
		return nil, errBadRequestf(`"arguments": %v`, err)
	}
	return compact.Bytes(), nil
}

// publish commits p and answers 202 {"index": N} with Backplane-Index.
func (n *Node) publish(w http.ResponseWriter, r *http.Request, p *fsm.Publish) {
	if err := n.parseSend(w, r, p); err != nil {
		n.metrics.publishes.WithLabelValues("rejected").Inc()
		writeError(w, r, err)
		return
	}
	res, err := n.proposer.ProposeOne(r.Context(), fsm.EncodePublish(p))
	if err != nil {
		n.metrics.publishes.WithLabelValues("failed").Inc()
		writeError(w, r, err)
		return
	}
	n.metrics.publishes.WithLabelValues("committed").Inc()
	w.Header().Set("Backplane-Index", strconv.FormatUint(res.Index, 10))
	if res.Duplicate {
		w.Header().Set("Backplane-Duplicate", "true")
	}
	writeIndex(w, res.Index)
}

// writeIndex answers 202 {"index": N}: what writeJSON writes for it, byte
// for byte, without a map and an encoder per publish.
func writeIndex(w http.ResponseWriter, index uint64) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
	var buf [40]byte
	b := append(buf[:0], `{"index":`...)
	b = strconv.AppendUint(b, index, 10)
	_, _ = w.Write(append(b, "}\n"...))
}

func (n *Node) sendToAll(w http.ResponseWriter, r *http.Request) {
	n.publish(w, r, &fsm.Publish{Audience: fsm.ToAll, Excluded: r.URL.Query()["excluded"]})
}

func (n *Node) sendToGroup(w http.ResponseWriter, r *http.Request) {
	n.publish(w, r, &fsm.Publish{Audience: fsm.ToGroups, Names: []string{r.PathValue("group")}, Excluded: r.URL.Query()["excluded"]})
}

func (n *Node) sendToUser(w http.ResponseWriter, r *http.Request) {
	n.publish(w, r, &fsm.Publish{Audience: fsm.ToUsers, Names: []string{r.PathValue("user")}})
}

func (n *Node) sendToConnection(w http.ResponseWriter, r *http.Request) {
	n.publish(w, r, &fsm.Publish{Audience: fsm.ToConnections, Names: []string{r.PathValue("connectionId")}})
}

// answerExists answers a HEAD existence check: 200 or 404.
func answerExists(w http.ResponseWriter, r *http.Request, ok bool, err error) {
	switch {
	case err != nil:
		writeError(w, r, err)
	case ok:
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// pathHubAnd reads the hub from the path and checks it, and a name of
// what kind (connection, group, user) that goes with it.
func (n *Node) pathHubAnd(r *http.Request, what, value string) (string, error) {
	hub := r.PathValue("hub")
	if err := fsm.ValidateHub(hub); err != nil {
		return "", err
	}
	if what == "group" {
		return hub, fsm.ValidateGroup(value)
	}
	return hub, fsm.ValidateName(what, value)
}

// connectionExists, groupExists and userExists answer the REST API's
// HEAD requests: 200 when the named connection is open, the group has
// members, the user has connections; 404 otherwise.
func (n *Node) connectionExists(w http.ResponseWriter, r *http.Request) {
	n.answerNamed(w, r, "connection", "connectionId", func(hub, conn string) (bool, error) {
		_, ok, err := n.fsm.Connection(hub, conn)
		return ok, err
	})
}

func (n *Node) groupExists(w http.ResponseWriter, r *http.Request) {
	n.answerNamed(w, r, "group", "group", n.fsm.GroupHasMembers)
}

func (n *Node) userExists(w http.ResponseWriter, r *http.Request) {
	n.answerNamed(w, r, "user", "user", n.fsm.UserHasConnections)
}

// answerNamed validates the hub and the name in the path parameter param
// (a what), and answers whether exists finds it.
func (n *Node) answerNamed(w http.ResponseWriter, r *http.Request, what, param string, exists func(hub, name string) (bool, error)) {
	name := r.PathValue(param)
	hub, err := n.pathHubAnd(r, what, name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ok, err := exists(hub, name)
	answerExists(w, r, ok, err)
}

func (n *Node) userInGroup(w http.ResponseWriter, r *http.Request) {
	group, user := r.PathValue("group"), r.PathValue("user")
	hub, err := n.pathHubAnd(r, "group", group)
	if err == nil {
		err = fsm.ValidateName("user", user)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	ok, err := n.fsm.IsMember(hub, group, fsm.MemberUser, user)
	answerExists(w, r, ok, err)
}

// commit proposes one non-publish command and answers 200.
func (n *Node) commit(w http.ResponseWriter, r *http.Request, cmd fsm.Command) {
	if _, err := n.proposer.ProposeOne(r.Context(), cmd); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{})
}

func (n *Node) connectionGroupChange(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := &fsm.Membership{Hub: r.PathValue("hub"), Group: r.PathValue("group"), Kind: fsm.MemberConnection, Member: r.PathValue("connectionId")}
		if err := fsm.ValidateMembership(m, !add); err != nil {
			writeError(w, r, err)
			return
		}
		if add {
			if err := n.connectionMustExist(m.Hub, m.Member); err != nil {
				writeError(w, r, err)
				return
			}
		}
		n.commit(w, r, fsm.EncodeMembership(m, add))
	}
}

func (n *Node) userGroupChange(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("ttl") {
			writeError(w, r, errBadRequestf("the ttl parameter is not supported: remove the user from the group explicitly"))
			return
		}
		m := &fsm.Membership{Hub: r.PathValue("hub"), Group: r.PathValue("group"), Kind: fsm.MemberUser, Member: r.PathValue("user")}
		if err := fsm.ValidateMembership(m, !add); err != nil {
			writeError(w, r, err)
			return
		}
		n.commit(w, r, fsm.EncodeMembership(m, add))
	}
}

// removeUserFromAllGroups removes a user from every group of the hub.
func (n *Node) removeUserFromAllGroups(w http.ResponseWriter, r *http.Request) {
	n.removeFromAllGroups(w, r, fsm.MemberUser, r.PathValue("user"))
}

// removeFromAllGroups commits the removal of a member (a user or a
// connection) from every group of the path's hub.
func (n *Node) removeFromAllGroups(w http.ResponseWriter, r *http.Request, kind fsm.MemberKind, member string) {
	m := &fsm.Membership{Hub: r.PathValue("hub"), Kind: kind, Member: member}
	if err := fsm.ValidateMembership(m, true); err != nil {
		writeError(w, r, err)
		return
	}
	n.commit(w, r, fsm.EncodeMembership(m, false))
}

func (n *Node) closeConnection(w http.ResponseWriter, r *http.Request) {
	conn := r.PathValue("connectionId")
	hub, err := n.pathHubAnd(r, "connection", conn)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := n.connectionMustExist(hub, conn); err != nil {
		writeError(w, r, err)
		return
	}
	reason := r.URL.Query().Get("reason")
	n.commit(w, r, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: conn, Reason: reason}))
}

// connectionMustExist answers 404 for a connection that is not open.
func (n *Node) connectionMustExist(hub, conn string) error {
	_, ok, err := n.fsm.Connection(hub, conn)
	if err == nil && !ok {
		err = errNotFoundf("connection %q is not connected to hub %q", conn, hub)
	}
	return err
}

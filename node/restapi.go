package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/backplane/backplane/fsm"
)

// The versioned server REST API: Azure SignalR Service's data-plane API
// versions 2022-06-01 and 2024-12-01 (/api/hubs/{hub}/...?api-version=).
// Where a route does what a v1 route does, it is served by the v1 handler
// (rest.go): one implementation, two shapes. What differs is here:
//
//   - api-version is required and must be one of apiVersions, and one
//     that defines the route;
//   - application=<app> prefixes the hub as Azure does: the effective hub
//     is lower(app) + "_" + lower(hub);
//   - errors are Azure's ErrorDetail, {"code", "message"}, with the code
//     also in x-ms-error-code;
//   - a few successes are 204 No Content where v1 answers 200 {};
//   - a read that decides the answer (existence checks, the presence list,
//     and the checks before adding a connection to a group or closing it)
//     first catches up with the leader's commit index (readBarrier), so it
//     sees every write acknowledged anywhere before it.

// The API versions served, oldest first.
const (
	apiVersion20220601 = "2022-06-01"
	apiVersion20241201 = "2024-12-01"
)

var apiVersions = []string{apiVersion20220601, apiVersion20241201}

var (
	bothVersions = apiVersions
	onlyLatest   = []string{apiVersion20241201}
)

// apiRoute is one route of the versioned API.
type apiRoute struct {
	method, path string
	versions     []string // the versions that define it
	h            http.HandlerFunc
	// noContent: the API answers 204 where the shared handler answers 200.
	noContent bool
	// open: no access token (the health check).
	open bool
	// barrier: catch up with the leader's commit index first.
	barrier bool
}

// apiRoutes is the route table of the versioned API.
func (n *Node) apiRoutes() []apiRoute {
	const hub = "/api/hubs/{hub}"
	return []apiRoute{
		{method: "HEAD", path: "/api/health", versions: bothVersions, h: n.apiHealth, open: true},
		{method: "GET", path: "/api/auth/accessKey", versions: onlyLatest, h: n.apiAccessKey},

		{method: "POST", path: hub + "/:send", versions: bothVersions, h: n.sendToAll},
		{method: "POST", path: hub + "/:closeConnections", versions: bothVersions, h: n.apiCloseConnections, noContent: true},
		{method: "POST", path: hub + "/:execute", versions: onlyLatest, h: n.apiExecute},
		{method: "POST", path: hub + "/:generateToken", versions: onlyLatest, h: n.apiGenerateToken},

		{method: "POST", path: hub + "/connections/{connectionId}/:send", versions: bothVersions, h: n.sendToConnection},
		{method: "DELETE", path: hub + "/connections/{connectionId}", versions: bothVersions, h: n.closeConnection, barrier: true},
		{method: "HEAD", path: hub + "/connections/{connectionId}", versions: bothVersions, h: n.connectionExists, barrier: true},
		{method: "DELETE", path: hub + "/connections/{connectionId}/groups", versions: bothVersions, h: n.apiRemoveConnectionFromAllGroups},
		{method: "POST", path: hub + "/connections/{connectionId}/:invoke", versions: onlyLatest, h: n.apiInvoke, barrier: true},
		{method: "POST", path: hub + "/connections/{connectionId}/streams/{streamId}/:send", versions: onlyLatest, h: n.apiStreamSend, barrier: true},
		{method: "POST", path: hub + "/connections/{connectionId}/streams/{streamId}/:complete", versions: onlyLatest, h: n.apiStreamComplete, barrier: true},

		{method: "HEAD", path: hub + "/groups/{group}", versions: bothVersions, h: n.groupExists, barrier: true},
		{method: "POST", path: hub + "/groups/{group}/:send", versions: bothVersions, h: n.sendToGroup},
		{method: "POST", path: hub + "/groups/{group}/:closeConnections", versions: bothVersions, h: n.apiCloseConnections, noContent: true},
		{method: "GET", path: hub + "/groups/{group}/connections", versions: onlyLatest, h: n.apiListGroupConnections, barrier: true},
		{method: "PUT", path: hub + "/groups/{group}/connections/{connectionId}", versions: bothVersions, h: n.connectionGroupChange(true), barrier: true},
		{method: "DELETE", path: hub + "/groups/{group}/connections/{connectionId}", versions: bothVersions, h: n.connectionGroupChange(false)},

		{method: "HEAD", path: hub + "/users/{user}", versions: bothVersions, h: n.userExists, barrier: true},
		{method: "POST", path: hub + "/users/{user}/:send", versions: bothVersions, h: n.sendToUser},
		{method: "POST", path: hub + "/users/{user}/:closeConnections", versions: bothVersions, h: n.apiCloseConnections, noContent: true},
		{method: "DELETE", path: hub + "/users/{user}/groups", versions: bothVersions, h: n.removeUserFromAllGroups, noContent: true},
		{method: "PUT", path: hub + "/users/{user}/groups/{group}", versions: bothVersions, h: n.apiAddUserToGroup},
		{method: "DELETE", path: hub + "/users/{user}/groups/{group}", versions: bothVersions, h: n.userGroupChange(false), noContent: true},
		{method: "HEAD", path: hub + "/users/{user}/groups/{group}", versions: bothVersions, h: n.userInGroup, barrier: true},
	}
}

// restAPIRoutes registers the versioned API and starts the loop that
// expires user-to-group memberships on an idle cluster.
func (n *Node) restAPIRoutes(mux *http.ServeMux) {
	for _, rt := range n.apiRoutes() {
		h := n.apiVersionChecked(rt)
		if rt.open {
			h = noBrowsers(h)
		} else {
			h = n.requireAccess(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, azureAnswers(rt.noContent, h))
	}
	mux.HandleFunc("POST "+clientCallPath, n.requirePeer(n.handleClientCall)) // restapi_invoke.go
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.groupTTLLoop()
	}()
}

// apiVersionChecked checks api-version and application, puts the
// effective hub in the request's path values, and catches up with the
// leader when the route reads before it answers.
func (n *Node) apiVersionChecked(rt apiRoute) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		v := q.Get("api-version")
		switch {
		case v == "":
			setErrorCode(w, "MissingApiVersion")
			writeError(w, r, errBadRequestf("the api-version query parameter is required; supported: %s", strings.Join(apiVersions, ", ")))
			return
		case !slices.Contains(apiVersions, v):
			setErrorCode(w, "UnsupportedApiVersion")
			writeError(w, r, errBadRequestf("api-version %q is not supported; supported: %s", v, strings.Join(apiVersions, ", ")))
			return
		case !slices.Contains(rt.versions, v):
			setErrorCode(w, "UnsupportedApiVersion")
			writeError(w, r, errBadRequestf("api-version %s does not define %s %s; it is in %s", v, rt.method, rt.path, strings.Join(rt.versions, ", ")))
			return
		}
		if q.Has("filter") && !strings.HasSuffix(rt.path, "/:execute") {
			// Ignoring it would reach more connections than the caller meant.
			writeError(w, r, errBadRequestf("filter is taken by POST /api/hubs/{hub}/:execute only"))
			return
		}
		if r.PathValue("hub") != "" && q.Has("application") {
			hub, err := applicationHub(q.Get("application"), r.PathValue("hub"))
			if err != nil {
				writeError(w, r, err)
				return
			}
			r.SetPathValue("hub", hub)
		}
		if rt.barrier {
			if err := n.readBarrier(r.Context()); err != nil {
				writeError(w, r, err)
				return
			}
		}
		rt.h(w, r)
	}
}

// applicationHub is the hub an application's hub maps to: as Azure
// SignalR names it, lower(application) + "_" + lower(hub).
func applicationHub(app, hub string) (string, error) {
	if err := fsm.ValidateHub(hub); err != nil {
		return "", err
	}
	if err := fsm.ValidateHub(app); err != nil {
		return "", errBadRequestf("application: %v", err)
	}
	h := strings.ToLower(app) + "_" + strings.ToLower(hub)
	if len(h) > fsm.MaxHubNameLen {
		return "", errBadRequestf("application and hub together are longer than %d characters", fsm.MaxHubNameLen)
	}
	return h, nil
}

// errorDetail is Azure's error body.
type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorCodes names each status for ErrorDetail.code, unless the handler
// named a more specific code (setErrorCode).
var errorCodes = map[int]string{
	http.StatusBadRequest:            "BadRequest",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Forbidden",
	http.StatusNotFound:              "NotFound",
	http.StatusRequestTimeout:        "RequestTimeout",
	http.StatusConflict:              "Conflict",
	http.StatusRequestEntityTooLarge: "PayloadTooLarge",
	http.StatusMisdirectedRequest:    "MisdirectedRequest",
	http.StatusTooManyRequests:       "TooManyRequests",
	http.StatusNotImplemented:        "NotImplemented",
	http.StatusServiceUnavailable:    "ServiceUnavailable",
	http.StatusInsufficientStorage:   "InsufficientStorage",
}

func errorCodeOf(status int) string {
	if c, ok := errorCodes[status]; ok {
		return c
	}
	return "InternalServerError"
}

// writeJSONError answers an ErrorDetail directly.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	if aw, ok := w.(*azureWriter); ok {
		aw.code = code
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

// setErrorCode names the ErrorDetail code of the error about to be
// written.
func setErrorCode(w http.ResponseWriter, code string) {
	if aw, ok := w.(*azureWriter); ok {
		aw.code = code
	}
}

// azureAnswers turns the shared handlers' answers into the versioned
// API's: an error body {"error": msg} (writeError's) becomes an
// ErrorDetail with x-ms-error-code, and with noContent a 200 becomes 204
// without a body.
func azureAnswers(noContent bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		aw := &azureWriter{ResponseWriter: w, noContent: noContent}
		h(aw, r)
		aw.finish()
	}
}

// azureWriter holds back an error answer to rewrite it.
type azureWriter struct {
	http.ResponseWriter
	noContent bool
	code      string // ErrorDetail code named by the handler
	status    int    // an error status held back
	errBody   bytes.Buffer
	drop      bool // discard the body (204)
}

func (w *azureWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	switch {
	case status >= 400:
		w.status = status
		return
	case w.noContent && status == http.StatusOK:
		status, w.drop = http.StatusNoContent, true
		h := w.Header()
		h.Del("Content-Type")
		h.Del("Content-Length")
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *azureWriter) Write(b []byte) (int, error) {
	switch {
	case w.status != 0:
		return w.errBody.Write(b)
	case w.drop:
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *azureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes a held-back error as an ErrorDetail.
func (w *azureWriter) finish() {
	if w.status == 0 {
		return
	}
	var body struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(w.errBody.String())
	if json.Unmarshal(w.errBody.Bytes(), &body) == nil && body.Error != "" {
		msg = body.Error
	}
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	code := w.code
	if code == "" {
		code = errorCodeOf(w.status)
	}
	h := w.Header()
	h.Set("x-ms-error-code", code)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Del("Content-Length")
	w.ResponseWriter.WriteHeader(w.status)
	_ = json.NewEncoder(w.ResponseWriter).Encode(errorDetail{Code: code, Message: msg}) // fails only when the client went away
}

package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/raftlog"
)

// Errors of the HTTP layer. writeError maps every error to a status in one
// place.
var (
	errBadRequest   = errors.New("bad request")
	errNotFound     = errors.New("not found")
	errUnauthorized = errors.New("unauthorized")
	errForbidden    = errors.New("forbidden")
	errConflict     = raftlog.ErrConflict
)

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var maxBytes *http.MaxBytesError
	switch {
	case errors.Is(err, errMisdirected):
		return http.StatusMisdirectedRequest
	case errors.Is(err, errSlowBody):
		return http.StatusRequestTimeout
	case errors.As(err, &maxBytes):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, fsm.ErrInvalidCommand), errors.Is(err, fsm.ErrUnknownCommand):
		return http.StatusBadRequest
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotFound), errors.Is(err, raftlog.ErrUnknownMember):
		return http.StatusNotFound
	case errors.Is(err, errConflict):
		return http.StatusConflict
	case errors.Is(err, ErrStorageFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrUncertain), errors.Is(err, ErrOverloaded), errors.Is(err, ErrNotMember), errors.Is(err, raftlog.ErrRecentlyRemoved), errors.Is(err, raftlog.ErrNotLeader),
		errors.Is(err, raftlog.ErrLeadershipLost), errors.Is(err, raftlog.ErrTimeout):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// storageFullRetrySeconds is the Retry-After of a 507: an operator has to
// free space, so retrying sooner only adds load.
const storageFullRetrySeconds = 10

// writeError answers err as JSON {"error": "..."} with its status. Retryable
// unavailability carries Retry-After.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		if errors.Is(err, ErrUncertain) || errors.Is(err, raftlog.ErrLeadershipLost) {
			msg += " (the write may have been committed: retry with the same Idempotency-Key to be safe)"
		}
	case http.StatusInsufficientStorage:
		w.Header().Set("Retry-After", strconv.Itoa(storageFullRetrySeconds))
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
	case http.StatusRequestEntityTooLarge:
		msg = "request body too large: " + msg
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errNotFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotFound}, args...)...)
}

func errBadRequestf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

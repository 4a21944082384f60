package stream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/backplane/backplane/transport/access"
)

// pollResponse is the body of a long poll.
type pollResponse struct {
	Messages []rawJSON   `json:"messages"`
	Next     uint64      `json:"next"`
	Reset    *resetField `json:"reset,omitempty"`
}

type resetField struct {
	Oldest uint64 `json:"oldest"`
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// servePoll answers one long poll: the messages after the cursor, waiting
// up to timeout (seconds, default 30, at most 90) for the first one, and
// the cursor to poll from next. Without a cursor it answers at once with
// the current end of the log as "next". A poll waits no longer than its
// token is valid.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request, grant access.Grant) {
	if err := pollParams(r); err != nil {
		writeStreamError(w, http.StatusBadRequest, err)
		return
	}
	req, ok := s.openStream(w, r, grant)
	if !ok {
		return
	}
	s.poll.Add(1)
	defer s.poll.Add(-1)
	timeout, limit := pollTimeout(r), pollLimit(r)
	if !grant.Expires.IsZero() {
		timeout = min(timeout, time.Until(grant.Expires))
	}
	resp := pollResponse{Messages: []rawJSON{}, Next: req.after}
	if req.fromNow {
		resp.Next = s.store.LastMessage()
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		page, err := s.store.WaitRead(ctx, &req.reader, req.after, limit)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			if r.Context().Err() != nil {
				return
			}
			writeStreamError(w, http.StatusInternalServerError, err)
			return
		}
		resp.Next = page.Next
		if page.Reset {
			resp.Reset = &resetField{Oldest: page.Oldest}
		}
		for i := range page.Messages {
			resp.Messages = append(resp.Messages, appendMessageJSON(nil, &page.Messages[i]))
		}
	}
	w.Header().Set("Cache-Control", "no-cache, no-store")
	writeJSONBody(w, resp)
}

func pollParams(r *http.Request) error {
	q := r.URL.Query()
	if v := q.Get("timeout"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 0 || time.Duration(n)*time.Second > MaxPollTimeout {
			return fmt.Errorf("%w: timeout must be 0 to 90 seconds", errBadStream)
		}
	}
	if v := q.Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > MaxPollLimit {
			return fmt.Errorf("%w: limit must be 1 to 1000", errBadStream)
		}
	}
	return nil
}

func pollTimeout(r *http.Request) time.Duration {
	if v := r.URL.Query().Get("timeout"); v != "" {
		n, _ := strconv.Atoi(v)
		return time.Duration(n) * time.Second
	}
	return DefaultPollTimeout
}

func pollLimit(r *http.Request) int {
	if v := r.URL.Query().Get("limit"); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return readBatch
}

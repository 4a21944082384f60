package stream

import (
	"net/http"

	"github.com/backplane/backplane/transport/access"
)

// ConnLimit is the per-address count the streams take part in (nil: no
// limit), for the node to share with its other client endpoints.
func (s *Server) ConnLimit() *access.ConnLimit { return s.opts.ConnLimit }

// limited counts a stream request against its address while it is served:
// an SSE or WebSocket stream for its whole life, a long poll while it
// waits. Over the limit the request gets 429.
func (s *Server) limited(h streamHandler) streamHandler {
	return func(w http.ResponseWriter, r *http.Request, grant access.Grant) {
		release, err := s.opts.ConnLimit.Acquire(r)
		if err != nil {
			writeStreamError(w, http.StatusTooManyRequests, err)
			return
		}
		defer release()
		h(w, r, grant)
	}
}

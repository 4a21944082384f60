package stream

import (
	"context"
	"net/http"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// ConnLimit is the per-address count the streams take part in (nil: no
// limit), for the node to share with its other client endpoints.
func (s *Server) ConnLimit() *access.ConnLimit { return s.opts.ConnLimit }

// limited counts a stream request against its address while it is served:
// an SSE or WebSocket stream for its whole life, a long poll while it
// waits. Over the limit the request gets 429. A WebSocket stream outlives
// its handler: it keeps its place (keepSlot) and gives it back when it ends.
func (s *Server) limited(h streamHandler) streamHandler {
	return func(w http.ResponseWriter, r *http.Request, grant access.Grant) {
		release, err := s.opts.ConnLimit.Acquire(r)
		if err != nil {
			writeStreamError(w, http.StatusTooManyRequests, err)
			return
		}
		cl := &netconn.Cleanups{}
		cl.Add(release)
		defer cl.Done()
		h(w, r.WithContext(context.WithValue(r.Context(), cleanupsKey{}, cl)), grant)
	}
}

type cleanupsKey struct{}

// keepSlot takes over the request's place in the per-address count from
// limited; the stream runs the returned cleanups when it ends (none for a
// request that has no place).
func keepSlot(r *http.Request) *netconn.Cleanups {
	cl, ok := r.Context().Value(cleanupsKey{}).(*netconn.Cleanups)
	if !ok {
		return &netconn.Cleanups{}
	}
	return cl.Keep()
}

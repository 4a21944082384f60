package stream

import (
	"context"
	"net/http"
	"sync"

	"github.com/backplane/backplane/transport/access"
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
		sl := &slot{release: release}
		defer func() {
			if !sl.kept {
				release()
			}
		}()
		h(w, r.WithContext(context.WithValue(r.Context(), slotKey{}, sl)), grant)
	}
}

// slot is a request's place in the per-address count.
type slot struct {
	release func()
	kept    bool // the handler took it over: limited does not release it
}

type slotKey struct{}

// keepSlot takes over the request's place in the per-address count from
// limited and returns its release, to call once (and only once) when the
// stream ends; a no-op for a request that has none.
func keepSlot(r *http.Request) (release func()) {
	sl, ok := r.Context().Value(slotKey{}).(*slot)
	if !ok {
		return func() {}
	}
	sl.kept = true
	return sync.OnceFunc(sl.release)
}

package node

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// HTTP timeouts. http.Server times out headers (-http-header-timeout) and
// idle keep-alive connections (-http-idle-timeout) itself; its ReadTimeout
// would also cut long polls, SSE and WebSockets, so a request body gets its
// own deadline here instead: the client must send the whole body within
// -http-body-timeout. Once the body is read the deadline is lifted, so a
// handler that then waits (a publish waiting for its commit) is not cut.

// withBodyTimeout gives every request that carries a body a read deadline.
func withBodyTimeout(h http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			h.ServeHTTP(w, r) // a connection that has no deadlines (HTTP/2 tests)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body has been read whole,
// and names the timeout when the client was too slow.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	once sync.Once
}

// errSlowBody is what a handler reads when the body did not arrive in time.
var errSlowBody = errors.New("request body not received within -http-body-timeout")

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.once.Do(func() { _ = b.rc.SetReadDeadline(time.Time{}) })
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = errSlowBody
	}
	return n, err
}

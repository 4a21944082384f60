package signalr

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// serveLongPoll answers one poll of a long-polling connection. The first
// poll connects and is answered at once with an empty 200; later polls
// return every queued record, or an empty 200 after PollTimeout; 204 means
// the connection is over. A new poll ends an older one with 204.
func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request, c *conn) {
	if err := c.attach(transportLongPolling); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
	h.Set("Long-Running", "true")
	if c.isDone() {
		if final := c.takeFinal(); final != nil {
			// Kept, inactive, for the client's DELETE (202) or its next
			// poll (204), as when a pending poll delivers the Close.
			writePoll(w, final)
			return
		}
		s.forget(c)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.PollTimeout)
	defer cancel()
	c.mu.Lock()
	if c.poll == nil {
		c.poll = &pollState{}
	}
	first := c.poll.ended.IsZero() && !c.poll.running
	if c.poll.stop != nil {
		c.poll.stop() // the older poll answers 204
	}
	c.poll.running, c.poll.stop = true, cancel
	c.poll.gen++
	gen := c.poll.gen
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.poll.gen == gen { // a newer poll owns the state otherwise
			c.poll.running, c.poll.stop = false, nil
		}
		c.poll.ended = time.Now()
		c.mu.Unlock()
	}()
	if first {
		c.startReceiving() // what the client posted before its first poll
		writePoll(w, nil)
		return
	}
	select {
	case <-c.out.ready:
		writePoll(w, c.drain(nil, 1<<20))
	case <-c.done:
		buf := c.drain(nil, 1<<30)
		if final := c.takeFinal(); final != nil {
			buf = append(buf, final...)
		}
		if len(buf) == 0 {
			// The client has been told: the connection is gone (a later
			// poll is 404, as in ASP.NET).
			s.forget(c)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		// Kept, inactive, for the client's DELETE or its next poll (204).
		writePoll(w, buf)
	case <-ctx.Done():
		switch {
		case r.Context().Err() != nil:
		case ctx.Err() == context.DeadlineExceeded:
			writePoll(w, nil)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// pollState is a long-polling connection's polls; conn.mu guards it.
type pollState struct {
	running bool               // a poll is pending
	ended   time.Time          // when the last poll returned
	stop    context.CancelFunc // ends the pending poll
	gen     uint64             // counts polls; a poll only clears state it owns
}

// stopped reports whether no poll is pending and none was for longer than
// timeout (or none ever came); c.mu is held.
func (p *pollState) stopped(now time.Time, timeout time.Duration) bool {
	return p == nil || !p.running && now.Sub(p.ended) > timeout
}

func writePoll(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

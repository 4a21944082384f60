package stream

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// serveSSE streams a hub's messages as Server-Sent Events whose id is the
// message index, so EventSource resumes by itself through Last-Event-ID.
// A cursor older than the retained history first gets "event: reset" with
// the oldest index still available. The response ends when the client's
// token expires (after a comment saying so); EventSource then reconnects
// and is refused until it presents a fresh token.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, grant access.Grant) {
	req, ok := s.openStream(w, r, grant)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	netconn.LimitRequestSendBuffer(r, netconn.SendBuffer)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.sse.Add(1)
	defer s.sse.Add(-1)

	after := req.after
	if req.fromNow {
		after = s.store.LastMessage()
	}
	// An initial comment flushes the headers at once: EventSource and the
	// SignalR client wait for the first bytes before they call open.
	dl := &writeDeadline{timeout: s.opts.WriteTimeout, set: rc.SetWriteDeadline}
	defer func() {
		if dl.expired {
			s.slowClientCut("stream_sse", r.RemoteAddr, req.reader.Hub, after)
		}
	}()
	buf := []byte(": backplane stream after " + strconv.FormatUint(after, 10) + "\nretry: 1000\n\n")
	if !flushSSE(rc, w, dl, buf) {
		return
	}
	ctx, cancel := untilExpiry(r.Context(), grant)
	defer cancel()
	ka := &keepAlive{parent: ctx, period: s.opts.KeepAlive}
	defer ka.stop()
	for {
		page, err := s.store.WaitRead(ka.wait(), &req.reader, after, readBatch)
		switch {
		case ctx.Err() != nil:
			switch cause := context.Cause(ctx); {
			case errors.Is(cause, errTokenExpired):
				flushSSE(rc, w, dl, []byte(": access token expired\n\n"))
			case errors.Is(cause, ErrDraining):
				flushSSE(rc, w, dl, appendDrainingSSE(buf[:0], after))
			}
			return
		case errors.Is(err, context.DeadlineExceeded):
			if !flushSSE(rc, w, dl, []byte(": ping\n\n")) {
				return
			}
			continue
		case err != nil:
			s.opts.Logger.Warn("sse read", "hub", req.reader.Hub, "err", err)
			return
		}
		buf = buf[:0]
		if page.Reset {
			buf = append(buf, "event: reset\ndata: "...)
			buf = appendResetJSON(buf, page.Oldest)
			buf = append(buf, "\n\n"...)
		}
		for i := range page.Messages {
			m := &page.Messages[i]
			buf = append(buf, "id: "...)
			buf = strconv.AppendUint(buf, m.Index, 10)
			buf = append(buf, "\ndata: "...)
			buf = appendMessageJSON(buf, m)
			buf = append(buf, "\n\n"...)
		}
		if !flushSSE(rc, w, dl, buf) {
			return
		}
		after = page.Next
	}
}

func flushSSE(rc *http.ResponseController, w http.ResponseWriter, dl *writeDeadline, b []byte) bool {
	dl.extend()
	_, err := w.Write(b)
	if err == nil {
		err = rc.Flush()
	}
	return dl.check(err)
}

// appendDrainingSSE is the last event of a stream whose node is shutting
// down: its cursor, to resume from on any node.
func appendDrainingSSE(b []byte, after uint64) []byte {
	b = append(b, "event: draining\ndata: {\"after\":"...)
	b = strconv.AppendUint(b, after, 10)
	return append(b, "}\n\n"...)
}

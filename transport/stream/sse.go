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
// and is refused until it presents a fresh token. Over HTTP/1.x the
// stream waits without a goroutine once set up (serveDetachedSSE); over
// HTTP/2 it is served here, on the request's goroutine.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, grant access.Grant) {
	req, ok := s.openStream(w, r, grant)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	netconn.LimitRequestSendBuffer(r, netconn.SendBuffer)
	detach := netconn.WriteSSEHeader(w, r)
	s.sse.Add(1)
	counted := true
	defer func() {
		if counted {
			s.sse.Add(-1)
		}
	}()

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
	if detach && s.serveDetachedSSE(w, r, req, grant, after) {
		counted = false // the stream counts itself out when it ends
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
		buf = appendSSEPage(buf[:0], &page)
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

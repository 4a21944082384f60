// Package stream serves the native cursor stream: a hub's messages
// (broadcasts plus chosen groups) with the message index as the cursor,
// over Server-Sent Events, long polling and WebSocket. It reads the
// replicated log and writes nothing to it; who may read what is decided
// by package access and the node's Authorize.
//
// A native reader needs no per-connection queue: it reads the replicated
// log from its cursor at its own pace, so a slow reader delays only itself
// and the log is the buffer.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// Log is what the streams need from the replicated state machine.
type Log interface {
	// Read returns at most limit messages for r after the cursor.
	Read(r *fsm.Filter, after uint64, limit int) (fsm.Page, error)
	// WaitRead is Read that blocks until there is a message or a reset,
	// or ctx ends.
	WaitRead(ctx context.Context, r *fsm.Filter, after uint64, limit int) (fsm.Page, error)
	// AfterChange calls fn, on a goroutine of its own, at the next change
	// of any of watches (a WebSocket stream watches its hub's messages);
	// stop cancels the call and reports whether it did.
	AfterChange(watches []fsm.Watch, fn func()) (stop func() bool)
	// LastMessage is the highest message index so far.
	LastMessage() uint64
}

// StreamOptions configures the native streams.
type Options struct {
	Logger *slog.Logger
	// AllowedOrigins lists browser origins that may read the streams
	// cross-origin ("*": any); the node's own host is always allowed.
	AllowedOrigins []string
	// Authorize, when set, checks each request before it is served: it
	// answers with its own error status and returns false, or returns what
	// the client's token grants. A stream ends when that access expires.
	Authorize func(w http.ResponseWriter, r *http.Request) (access.Grant, bool)
	// RelayPolicy is access.RelayOpen (or empty) or access.RelayRoles. Under access.RelayRoles
	// a stream may follow a group (group=) only if the token grants
	// backplane.joinLeaveGroup or backplane.joinLeaveGroup.<group>.
	RelayPolicy string
	// KeepAlive is how often an idle SSE or WebSocket stream sends a ping.
	KeepAlive time.Duration
	// WriteTimeout bounds one write to a client; a client that does not
	// take the bytes in time is disconnected.
	WriteTimeout time.Duration
	// NotReady, when set, says why this node must not serve reads now ("":
	// it may): a node that has not caught up with the log would answer as
	// if it had nothing more. Such a request gets 503 with Retry-After, so
	// the reader retries or reads from another node.
	NotReady func() string
	// ConnLimit bounds the open streams and long polls per remote address
	// (429 past it); nil: no limit.
	ConnLimit *access.ConnLimit
	// Context bounds the streams' lives: when it ends, every stream ends
	// with its cause (ErrDraining: the reader is told its cursor). A
	// WebSocket stream, and an SSE stream over HTTP/1.x, outlive their
	// request's handler (they wait without a goroutine), so they end with
	// this context, not with the request's; SSE streams over HTTP/2 and
	// long polls end with either. Default: Background.
	Context context.Context
	// ParkIdleReaders is how long a WebSocket stream's reader (which only
	// handles the client's control frames), or an SSE stream's (which
	// only notices the client hanging up), waits on a goroutine of its
	// own before it parks (see netconn.IdleReader); default 1 s,
	// negative: never.
	ParkIdleReaders time.Duration
}

// Defaults and limits of the native streams.
const (
	DefaultKeepAlive    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultPollTimeout  = 30 * time.Second
	MaxPollTimeout      = 90 * time.Second
	maxGroupsPerReader  = 100
	readBatch           = 256
	MaxPollLimit        = 1000
)

// Streams serves the native cursor stream endpoints.
type Server struct {
	store Log
	opts  Options
	sse   atomic.Int64
	poll  atomic.Int64
	ws    atomic.Int64
	// slowSSE and slowWS count readers cut for not reading.
	slowSSE atomic.Int64
	slowWS  atomic.Int64
	// parkedWS and parkedSSE count the WebSocket and SSE streams whose
	// reader is parked.
	parkedWS, parkedSSE atomic.Int64
}

// NewStreams returns the native stream handlers over log.
func NewServer(store Log, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.ParkIdleReaders == 0 {
		opts.ParkIdleReaders = netconn.DefaultParkAfter
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	return &Server{store: store, opts: opts}
}

// Register adds the stream routes to mux:
// GET /v1/hubs/{hub}/stream (SSE), /poll (long polling) and /ws (WebSocket).
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/hubs/{hub}/stream", s.guard(s.limited(s.serveSSE)))
	mux.HandleFunc("GET /v1/hubs/{hub}/poll", s.guard(s.limited(s.servePoll)))
	mux.HandleFunc("GET /v1/hubs/{hub}/ws", s.guard(s.limited(s.serveWS)))
}

// ParkedReaders is how many WebSocket streams have their reader parked.
func (s *Server) ParkedReaders() int64 { return s.parkedWS.Load() }

// ParkedSSE is how many SSE streams have their reader parked.
func (s *Server) ParkedSSE() int64 { return s.parkedSSE.Load() }

// Counts reports the open readers per transport.
func (s *Server) Counts() map[string]int {
	return map[string]int{"stream_sse": int(s.sse.Load()), "stream_poll": int(s.poll.Load()), "stream_ws": int(s.ws.Load())}
}

// streamHandler serves a stream request with what its token grants.
type streamHandler func(w http.ResponseWriter, r *http.Request, grant access.Grant)

// guard authorizes a request before h serves it. A token that has already
// expired (the token parser tolerates some clock skew) is refused: the
// stream would end at once, and EventSource would keep reconnecting.
func (s *Server) guard(h streamHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			if !access.OriginAllowed(r, s.opts.AllowedOrigins) {
				writeStreamError(w, http.StatusForbidden, fmt.Errorf("forbidden: origin %s is not allowed (add it to -allowed-origins)", origin))
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Add("Vary", "Origin")
		}
		var grant access.Grant
		if s.opts.Authorize != nil {
			var ok bool
			if grant, ok = s.opts.Authorize(w, r); !ok {
				return
			}
		}
		if !grant.Expires.IsZero() && !time.Now().Before(grant.Expires) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
			writeStreamError(w, http.StatusUnauthorized, errors.New("unauthorized: the access token has expired"))
			return
		}
		if reason := s.waitReady(r.Context()); reason != "" {
			w.Header().Set("Retry-After", "1")
			writeStreamError(w, http.StatusServiceUnavailable, fmt.Errorf("this node is not serving reads yet (%s): retry, or read from another node", reason))
			return
		}
		h(w, r, grant)
	}
}

// readyWait is how long a read waits for its node to catch up before it
// is told to retry: long enough to cover a leader change or a restart a
// few entries behind, short enough for a reader to go elsewhere soon.
const readyWait = 2 * time.Second

// waitReady waits up to readyWait for Options.NotReady to clear and returns
// the last reason ("" once ready).
func (s *Server) waitReady(ctx context.Context) string {
	if s.opts.NotReady == nil {
		return ""
	}
	reason := s.opts.NotReady()
	if reason == "" {
		return ""
	}
	deadline := time.NewTimer(readyWait)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return reason
		case <-deadline.C:
			return reason
		case <-tick.C:
			if reason = s.opts.NotReady(); reason == "" {
				return ""
			}
		}
	}
}

// ErrDraining is the cause with which the node ends its streams when it
// shuts down: an SSE stream gets a last "event: draining" with its cursor,
// a WebSocket the close code 1012 (service restart) with its cursor in the
// reason, so the reader resumes on another node.
var ErrDraining = errors.New("node draining")

// errTokenExpired is the cause of a stream's context ending when its
// token expires.
var errTokenExpired = errors.New("access token expired")

// untilExpiry returns ctx ending also when access expires, with
// errTokenExpired as its cause.
func untilExpiry(ctx context.Context, grant access.Grant) (context.Context, context.CancelFunc) {
	if grant.Expires.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, grant.Expires, errTokenExpired)
}

// openStream parses a stream request and checks that its token may follow
// the groups it names; it answers 400 or 403 itself.
func (s *Server) openStream(w http.ResponseWriter, r *http.Request, grant access.Grant) (streamRequest, bool) {
	req, err := parseStream(r)
	if err != nil {
		writeStreamError(w, http.StatusBadRequest, err)
		return req, false
	}
	if access.Restricted(s.opts.RelayPolicy) {
		for _, g := range req.reader.Groups {
			if err := grant.Permissions.Check(access.PermJoinLeaveGroup, g); err != nil {
				writeStreamError(w, http.StatusForbidden, fmt.Errorf("group=%s: %w", g, err))
				return req, false
			}
		}
	}
	return req, true
}

// streamRequest is a parsed stream request.
type streamRequest struct {
	reader fsm.Filter
	after  uint64
	// fromNow is set when the request named no cursor: it starts at the
	// current end of the log.
	fromNow bool
}

var errBadStream = errors.New("bad stream request")

// parseStream reads the hub, groups and cursor of a stream request. The
// cursor comes from Last-Event-ID (SSE reconnects) or after=N.
func parseStream(r *http.Request) (streamRequest, error) {
	req := streamRequest{reader: fsm.Filter{Hub: r.PathValue("hub"), Broadcast: true}}
	if err := fsm.ValidateHub(req.reader.Hub); err != nil {
		return req, fmt.Errorf("%w: %w", errBadStream, err)
	}
	q := r.URL.Query()
	groups := q["group"]
	if len(groups) > maxGroupsPerReader {
		return req, fmt.Errorf("%w: at most %d groups per stream", errBadStream, maxGroupsPerReader)
	}
	for _, g := range groups {
		if err := fsm.ValidateGroup(g); err != nil {
			return req, fmt.Errorf("%w: %w", errBadStream, err)
		}
	}
	req.reader.Groups = groups
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("after")
	}
	if cursor == "" {
		req.fromNow = true
		return req, nil
	}
	after, err := strconv.ParseUint(cursor, 10, 64)
	if err != nil {
		return req, fmt.Errorf("%w: cursor %q is not a message index (a non-negative integer)", errBadStream, cursor)
	}
	req.after = after
	return req, nil
}

// keepAlive is the context a native stream waits for messages under. It
// ends KeepAlive after it was made, and the stream then sends a ping. It is
// made once per keep-alive period rather than per wait, so a busy stream
// does not create and stop a timer per batch; it sends a needless ping
// once per period instead.
type keepAlive struct {
	parent context.Context
	period time.Duration
	ctx    context.Context
	cancel context.CancelFunc
}

// wait returns the current period's context, starting a new period if the
// last one ended.
func (k *keepAlive) wait() context.Context {
	if k.ctx == nil || k.ctx.Err() != nil {
		k.stop()
		k.ctx, k.cancel = context.WithTimeout(k.parent, k.period)
	}
	return k.ctx
}

func (k *keepAlive) stop() {
	if k.cancel != nil {
		k.cancel()
	}
}

// writeDeadline moves a connection's write deadline only once half of it
// is spent, since setting it costs a timer update: a write that blocks
// fails within timeout/2 to timeout.
type writeDeadline struct {
	timeout time.Duration
	set     func(time.Time) error
	at      time.Time
	// expired is set once a write failed on the deadline: the client did
	// not take the bytes in time.
	expired bool
}

// check records whether err is the write deadline passing and reports
// whether the write succeeded.
func (d *writeDeadline) check(err error) bool {
	// gorilla/websocket hides the deadline behind its own net.Error.
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		d.expired = true
	}
	return err == nil
}

// slowClientCut counts and logs, once per connection, a reader cut because
// it did not take its bytes within WriteTimeout.
func (s *Server) slowClientCut(transport, remote, hub string, cursor uint64) {
	switch transport {
	case "stream_sse":
		s.slowSSE.Add(1)
	case "stream_ws":
		s.slowWS.Add(1)
	}
	s.opts.Logger.Warn("slow client cut: it did not take its messages within the write timeout",
		"transport", transport, "hub", hub, "remote", remote, "cursor", cursor, "write_timeout", s.opts.WriteTimeout)
}

// SlowClientsCut reports, per transport, how many readers were cut for not
// taking their messages within WriteTimeout.
func (s *Server) SlowClientsCut() map[string]int64 {
	return map[string]int64{"stream_sse": s.slowSSE.Load(), "stream_ws": s.slowWS.Load()}
}

func (d *writeDeadline) extend() {
	if now := time.Now(); d.at.Sub(now) < d.timeout/2 {
		d.at = now.Add(d.timeout)
		_ = d.set(d.at)
	}
}

func writeStreamError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// appendMessageJSON appends {"index":N,"target":"...","arguments":[...]}.
func appendMessageJSON(b []byte, m *fsm.Message) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, m.Index, 10)
	b = append(b, `,"target":`...)
	t, _ := json.Marshal(m.Target)
	b = append(b, t...)
	b = append(b, `,"arguments":`...)
	b = append(b, m.Arguments...)
	return append(b, '}')
}

func appendResetJSON(b []byte, oldest uint64) []byte {
	b = append(b, `{"reset":{"oldest":`...)
	b = strconv.AppendUint(b, oldest, 10)
	return append(b, `}}`...)
}

func writeJSONBody(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

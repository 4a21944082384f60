package signalr2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
	"github.com/backplane/backplane/transport/signalr"
)

// Options configures the SignalR 2 endpoint.
type Options struct {
	Logger *slog.Logger
	// Secrets sign the connection and groups tokens; every member of the
	// cluster must be given the same. The first signs, all verify (a
	// rotation lists the new one first). Required.
	Secrets [][]byte
	// Authenticate identifies clients; nil: every client is anonymous.
	Authenticate Authenticator
	// AuthHeaders names the request headers Authenticate reads. A
	// WebSocket keeps only these of its upgrade request, for the
	// re-authentication a send to another hub needs (its query is kept
	// whole); nil keeps every header.
	AuthHeaders []string
	// AllowedOrigins lists browser origins allowed cross-origin ("*":
	// any); the node's own host is always allowed.
	AllowedOrigins []string
	// RelayPolicy is access.RelayOpen (or empty) or access.RelayRoles.
	RelayPolicy string
	// RelayDisabled lists hubs whose relay methods are off.
	RelayDisabled []string
	// MaxGroupsPerConnection bounds JoinGroup per hub (0: 100; negative:
	// no limit).
	MaxGroupsPerConnection int
	// MaxMessageSize bounds a client's invocation (0: 32 KiB).
	MaxMessageSize int
	// ConnLimit bounds the open requests per remote address; nil: none.
	ConnLimit *access.ConnLimit

	// Timeouts announced in negotiate and kept by the server; zero takes
	// ASP.NET SignalR 2's defaults.
	KeepAlive               time.Duration // 10 s: a keep-alive on idle streams
	DisconnectTimeout       time.Duration // 30 s: a client gives up reconnecting
	ConnectionTimeout       time.Duration // 110 s: a long poll's longest wait
	TransportConnectTimeout time.Duration // 5 s
	// WriteTimeout bounds one write to a client (0: 10 s).
	WriteTimeout time.Duration
	// ProposeTimeout bounds one write to the log (0: 10 s).
	ProposeTimeout time.Duration
	// TouchInterval is how often a node tells a connection's holder that
	// it served the connection's polls (0: 5 s).
	TouchInterval time.Duration
	// Application, when set, runs the hub invocations that are not relay
	// methods the client may call, and is told of connections (see
	// app.go); nil: relay methods only.
	Application signalr.Application
	// InvocationRate (per second) and InvocationBurst bound a
	// connection's hub invocations with a token bucket; one over it is
	// answered with an error. Rate 0 or less: no limit; burst below 1:
	// the rate's worth.
	InvocationRate  float64
	InvocationBurst int
	// InvokeTimeout bounds one call of the Application, with the wait for
	// the connection's earlier invocations (0: 30 s).
	InvokeTimeout time.Duration
	// Draining is the cause with which the node ends client requests when
	// it shuts down: streams and polls then tell the client to reconnect
	// (the envelope's "T":1), which it does through the load balancer.
	Draining error
	// ParkIdleReaders is how long a WebSocket's reader waits for the
	// client's next frame on a goroutine of its own before it parks (see
	// netconn.IdleReader; default 1 s, negative: never).
	ParkIdleReaders time.Duration
}

// Defaults, as ASP.NET SignalR 2 has them.
const (
	DefaultKeepAlive               = 10 * time.Second
	DefaultDisconnectTimeout       = 30 * time.Second
	DefaultConnectionTimeout       = 110 * time.Second
	DefaultTransportConnectTimeout = 5 * time.Second
	defaultWriteTimeout            = 10 * time.Second
	defaultProposeTimeout          = 10 * time.Second
	defaultTouchInterval           = 5 * time.Second
	defaultInvokeTimeout           = 30 * time.Second
	defaultMaxGroups               = 100
	defaultMaxMessageSize          = 32 << 10
	// maxHubsPerConnection bounds connectionData.
	maxHubsPerConnection = 16
	// readBatch is the most messages in one envelope.
	readBatch = 1000
	// recordWait is how long a request waits for its connection's record
	// to reach this node's store (it was committed through another node a
	// moment ago) before it counts as closed.
	recordWait = 3 * time.Second
	// readyWait is how long a read waits for this node to catch up with
	// the log before it answers 503.
	readyWait = 2 * time.Second
)

// Server is the SignalR 2 endpoint of one node.
type Server struct {
	cluster  Cluster
	opts     Options
	log      *slog.Logger
	conns    signer // connection tokens
	groups   signer // groups tokens
	relayOff map[string]bool
	live     *liveness
	calls    callStates
	upgrader websocket.Upgrader
	// parkedWS and parkedSSE count the WebSockets and SSE streams whose
	// reader is parked.
	parkedWS, parkedSSE atomic.Int64
	// serving counts the transport requests this node serves.
	serving struct{ ws, sse, polls atomic.Int64 }

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

// ParkedReaders is how many WebSockets have their reader parked.
func (s *Server) ParkedReaders() int64 { return s.parkedWS.Load() }

// ParkedSSE is how many SSE streams have their reader parked.
func (s *Server) ParkedSSE() int64 { return s.parkedSSE.Load() }

// Counts reports the connections this node serves, by transport: open
// WebSockets and Server-Sent Events streams, and long polls waiting.
func (s *Server) Counts() map[string]int {
	return map[string]int{
		"signalr2_websockets":  int(s.serving.ws.Load()),
		"signalr2_sse":         int(s.serving.sse.Load()),
		"signalr2_longpolling": int(s.serving.polls.Load()),
	}
}

// NewServer returns the endpoint over cluster. Start runs its background
// work.
func NewServer(cluster Cluster, opts Options) (*Server, error) {
	if len(opts.Secrets) == 0 {
		return nil, errors.New("signalr2: a secret for the tokens is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&opts.KeepAlive, DefaultKeepAlive)
	setDefault(&opts.DisconnectTimeout, DefaultDisconnectTimeout)
	setDefault(&opts.ConnectionTimeout, DefaultConnectionTimeout)
	setDefault(&opts.TransportConnectTimeout, DefaultTransportConnectTimeout)
	setDefault(&opts.WriteTimeout, defaultWriteTimeout)
	setDefault(&opts.ProposeTimeout, defaultProposeTimeout)
	setDefault(&opts.TouchInterval, defaultTouchInterval)
	setDefault(&opts.InvokeTimeout, defaultInvokeTimeout)
	if opts.ParkIdleReaders == 0 {
		opts.ParkIdleReaders = netconn.DefaultParkAfter
	}
	if opts.MaxGroupsPerConnection == 0 {
		opts.MaxGroupsPerConnection = defaultMaxGroups
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = defaultMaxMessageSize
	}
	s := &Server{
		cluster:  cluster,
		opts:     opts,
		log:      opts.Logger,
		conns:    newSigner(opts.Secrets, purposeConnection),
		groups:   newSigner(opts.Secrets, purposeGroups),
		relayOff: map[string]bool{},
	}
	for _, h := range opts.RelayDisabled {
		s.relayOff[strings.ToLower(h)] = true
	}
	s.live = newLiveness()
	s.upgrader = websocket.Upgrader{
		CheckOrigin: func(r *http.Request) bool { return access.OriginAllowed(r, opts.AllowedOrigins) },
		// ReadBufferSize 0: gorilla reads through the netconn.Hijacker's
		// small buffer. Write buffers are held only while a message is
		// written: an idle socket keeps none.
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Start runs the reaper, which closes the connections this node holds
// once their client is gone, and reports polls served here to the
// holders of their connections.
func (s *Server) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reapLoop()
	}()
}

// Stop ends the background work and the WebSockets still open, which
// are told to reconnect elsewhere ("T":1) when Options.Draining is set.
func (s *Server) Stop() {
	cause := s.opts.Draining
	if cause == nil {
		cause = context.Canceled
	}
	s.cancel(cause)
	s.wg.Wait()
}

// ServeHTTP routes on the path's last segment, case-insensitively and
// whatever the method, as ASP.NET SignalR 2 does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !s.cors(w, r) {
		return
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.URL.Query().Get("callback") != "" {
		writeError(w, http.StatusForbidden, errors.New("forbidden: JSONP is not supported"))
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	i := strings.LastIndexByte(path, '/')
	switch strings.ToLower(path[i+1:]) {
	case "negotiate":
		s.serveNegotiate(w, r, path[:i])
	case "ping":
		writeJSON(w, map[string]string{"Response": "pong"})
	case "hubs", "js":
		s.serveProxy(w, r, path[:i])
	case "connect":
		s.serveTransport(w, r, modeConnect)
	case "reconnect":
		s.serveTransport(w, r, modeReconnect)
	case "poll":
		s.serveTransport(w, r, modePoll)
	case "start":
		s.serveStart(w, r)
	case "send":
		s.serveSend(w, r)
	case "abort":
		s.serveAbort(w, r)
	default:
		writeError(w, http.StatusNotFound, fmt.Errorf("no SignalR 2 endpoint %s", r.URL.Path))
	}
}

// cors answers for a browser origin: an allowed one is echoed with
// credentials (the jQuery client sends them cross-domain); another gets
// 403.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !access.OriginAllowed(r, s.opts.AllowedOrigins) {
		writeError(w, http.StatusForbidden, fmt.Errorf("forbidden: origin %s is not allowed (add it to -allowed-origins)", origin))
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Requested-With")
		h.Set("Access-Control-Max-Age", "600")
	}
	return true
}

// negotiateResponse is the body of /negotiate (field order as ASP.NET's).
type negotiateResponse struct {
	URL                     string   `json:"Url"`
	ConnectionToken         string   `json:"ConnectionToken"`
	ConnectionID            string   `json:"ConnectionId"`
	KeepAliveTimeout        *float64 `json:"KeepAliveTimeout"`
	DisconnectTimeout       float64  `json:"DisconnectTimeout"`
	ConnectionTimeout       float64  `json:"ConnectionTimeout"`
	TryWebSockets           bool     `json:"TryWebSockets"`
	ProtocolVersion         string   `json:"ProtocolVersion"`
	TransportConnectTimeout float64  `json:"TransportConnectTimeout"`
	LongPollDelay           float64  `json:"LongPollDelay"`
}

// serveNegotiate issues a connection id and its token, bound to the user.
// base is the request path before /negotiate: the client builds the
// transport URLs from it.
func (s *Server) serveNegotiate(w http.ResponseWriter, r *http.Request, base string) {
	hubs, err := parseConnectionData(r.URL.Query().Get("connectionData"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	id, err := s.authenticate(r, hubs)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	connID := newConnectionID()
	keepAliveTimeout := (2 * s.opts.KeepAlive).Seconds()
	writeJSON(w, negotiateResponse{
		URL:                     base,
		ConnectionToken:         s.conns.connectionToken(connToken{ConnID: connID, User: id.UserID}),
		ConnectionID:            connID,
		KeepAliveTimeout:        &keepAliveTimeout,
		DisconnectTimeout:       s.opts.DisconnectTimeout.Seconds(),
		ConnectionTimeout:       s.opts.ConnectionTimeout.Seconds(),
		TryWebSockets:           true,
		ProtocolVersion:         protocolVersion(r.URL.Query().Get("clientProtocol")),
		TransportConnectTimeout: s.opts.TransportConnectTimeout.Seconds(),
		LongPollDelay:           0,
	})
}

// protocolVersion answers the client's protocol version clamped to
// [1.2, 2.0], as ASP.NET SignalR 2.4 does: 2.4 clients send 2.1 and get
// "2.0"; the wire format is the same.
func protocolVersion(client string) string {
	switch client {
	case "1.2", "1.3", "1.4", "1.5":
		return client
	}
	return "2.0"
}

// serveStart answers the client's start request once its connection is
// recorded.
func (s *Server) serveStart(w http.ResponseWriter, r *http.Request) {
	c, ok := s.openRequest(w, r)
	if !ok {
		return
	}
	if !s.ready(w, r) {
		return
	}
	closed, err := s.waitRecords(r.Context(), c, false)
	if err != nil || closed {
		if err == nil {
			err = errors.New("the connection is not open: start a new one")
		}
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, map[string]string{"Response": "started"})
}

// serveAbort closes the connection: the client stopped it.
func (s *Server) serveAbort(w http.ResponseWriter, r *http.Request) {
	c, ok := s.openRequest(w, r)
	if !ok {
		return
	}
	s.live.forget(c.id)
	s.calls.drop(c.id)
	if len(c.hubs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.ProposeTimeout)
		err := s.cluster.Close(ctx, c.id, c.hubs, false, "client stopped the connection")
		cancel()
		switch {
		case err == nil:
			s.tellDisconnected(c.id, c.user, c.hubs, c, "")
		case !errors.Is(err, ErrRejected):
			s.log.Warn("close an aborted connection", "conn", c.id, "err", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

// ready waits up to readyWait for this node to catch up with the log, and
// otherwise answers 503 with Retry-After.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) bool {
	reason := s.cluster.NotReady()
	if reason == "" {
		return true
	}
	deadline := time.NewTimer(readyWait)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for reason != "" {
		select {
		case <-r.Context().Done():
			return false
		case <-deadline.C:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("this node is not serving reads yet (%s): retry, or use another node", reason))
			return false
		case <-tick.C:
			reason = s.cluster.NotReady()
		}
	}
	return true
}

// parseConnectionData reads the hubs a connection subscribes to:
// [{"name":"chathub"}] from jQuery, [{"Name":"ChatHub"}] from .NET, raw or
// percent-encoded. Names are lower-cased: SignalR 2 hub names are case
// insensitive, and the lower-case name is the hub the other clients and
// the REST API address.
func parseConnectionData(raw string) ([]string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	if strings.HasPrefix(raw, "%") {
		if u, err := url.QueryUnescape(raw); err == nil {
			raw = u
		}
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &entries); err != nil {
		return nil, fmt.Errorf("connectionData must be a JSON array of {\"name\": hub}: %v", err)
	}
	if len(entries) > maxHubsPerConnection {
		return nil, fmt.Errorf("connectionData names %d hubs: at most %d", len(entries), maxHubsPerConnection)
	}
	var hubs []string
	for _, e := range entries {
		var name string
		for k, v := range e {
			if strings.EqualFold(k, "name") {
				if err := json.Unmarshal(v, &name); err != nil {
					return nil, fmt.Errorf("connectionData: a hub name must be a string")
				}
			}
		}
		hub, err := hubName(name)
		if err != nil {
			return nil, fmt.Errorf("connectionData: %w", err)
		}
		for _, h := range hubs {
			if h == hub {
				return nil, fmt.Errorf("connectionData: hub %q is listed twice", name)
			}
		}
		hubs = append(hubs, hub)
	}
	return hubs, nil
}

// hubName is the hub a SignalR 2 client means: its name in lower case.
func hubName(name string) (string, error) {
	hub := strings.ToLower(name)
	if err := fsm.ValidateHub(hub); err != nil {
		return "", err
	}
	return hub, nil
}

func (s *Server) authenticate(r *http.Request, hubs []string) (Identity, error) {
	if s.opts.Authenticate == nil {
		return Identity{}, nil
	}
	id, err := s.opts.Authenticate(r, hubs)
	if err != nil {
		return Identity{}, err
	}
	if !id.Expires.IsZero() && !time.Now().Before(id.Expires) {
		return Identity{}, fmt.Errorf("%w: the access token has expired", ErrUnauthorized)
	}
	return id, nil
}

// writeAuthError answers an authentication failure: 401 with
// WWW-Authenticate, or 403.
func writeAuthError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, err)
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Bearer realm="backplane"`)
		writeError(w, http.StatusUnauthorized, err)
	default:
		writeError(w, http.StatusBadRequest, err)
	}
}

// writeError answers with a status and the error as text, as ASP.NET
// SignalR 2 does (the client shows responseText).
func writeError(w http.ResponseWriter, status int, err error) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(err.Error()))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSONBytes(w, b)
}

func writeJSONBytes(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Cache-Control", "no-cache, no-store")
	_, _ = w.Write(b)
}

// Package signalr serves official ASP.NET Core SignalR clients: negotiate,
// the WebSockets, Server-Sent Events and long-polling transports, the JSON
// and MessagePack hub protocols, and the relay hub methods. Every message
// goes through the replicated log; each node's dispatcher follows the log
// and delivers to the connections it holds.
//
// A connection is held by the node that negotiated it. Its token names that
// node, so a request for the connection that reaches another node (behind a
// load balancer without sticky sessions) is forwarded to the holder.
//
// The package owns the SignalR endpoint and its transports, each
// connection's life (its phases, phase.go, and the reaper that acts on
// them), relay invocations and their limits, and stateful reconnect's
// numbering and buffer. It must not know the log's wire format: it asks
// the cluster for what it needs in its own words through Cluster (open,
// close, take over, relay, record an invocation, checkpoint, expire) and
// reads the replicated state through it; the node's adapter turns those
// requests into log commands.
package signalr

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// Identity is who a connection belongs to, from its access token.
type Identity struct {
	UserID  string
	Expires time.Time // zero: no expiry
	// Permissions are the roles the token grants (its role claim); they
	// decide which relay methods the connection may call under the
	// access.RelayRoles policy.
	Permissions access.Permissions
	// Claims are the token's claims, for the Application (ConnInfo.Claims).
	Claims []Claim
}

// Options configures the SignalR layer. Zero values take ASP.NET Core's
// defaults.
type Options struct {
	Logger *slog.Logger
	// Authenticate identifies the client of a negotiate or a transport
	// request; an error answers 401. Nil: every client is anonymous.
	Authenticate func(r *http.Request) (Identity, error)
	// AllowedOrigins lists browser origins allowed cross-origin (CORS with
	// credentials, and WebSocket origin checks). Same-origin requests and
	// requests without an Origin header are always allowed.
	AllowedOrigins []string
	// RelayDisabled names hubs whose relay methods are switched off.
	RelayDisabled []string
	// RelayPolicy is access.RelayOpen (or empty: every client may call
	// every relay method) or access.RelayRoles (a client may call only
	// what its Identity's Permissions grant).
	RelayPolicy string
	// CloseOnAuthenticationExpiration closes a connection (allowing the
	// client to reconnect) when its access token expires. Off by default,
	// as in ASP.NET Core: a token is checked when the connection starts
	// and on each of its later requests, and an open connection outlives
	// it.
	CloseOnAuthenticationExpiration bool
	// MaxMessageSize is the largest client message (default 32 KB).
	MaxMessageSize int
	// OutboundQueue is how many records may wait for a slow client before
	// it is disconnected with allowReconnect (default 4096).
	OutboundQueue     int
	KeepAlive         time.Duration // default 15 s
	ClientTimeout     time.Duration // default 30 s
	HandshakeTimeout  time.Duration // default 15 s
	DisconnectTimeout time.Duration // default 15 s: reaps unused and inactive connections
	PollTimeout       time.Duration // default 90 s (below the JS client's 100 s)
	// WriteDeadline bounds one write to a client's socket or SSE stream
	// (default 10 s): a client that does not take it in time is cut.
	WriteDeadline time.Duration
	// ProposeTimeout bounds each change the layer asks of the cluster:
	// recording an open, a close, a relay batch, a checkpoint (default
	// 10 s). A stateful invocation retries for three times as long.
	ProposeTimeout time.Duration
	// UpgradeWait is how long a stateful connection's application value,
	// stream item or call to the client waits for the cluster's feature
	// level to allow it before it is refused with ErrUpgrading (default
	// 5 s: a new cluster's leader raises the level within a few seconds
	// of its members answering; only a member of an older version keeps
	// it low for longer).
	UpgradeWait time.Duration
	// ParkIdleReaders is how long a WebSocket's reader waits for the
	// client's next bytes on a goroutine of its own before it parks,
	// handing the socket to an epoll set it shares with every other idle
	// socket, so that an idle connection costs no goroutine (Linux;
	// default 1 s: a client that sends its keep-alive Ping every 15 s
	// holds a reader about a fifteenth of the time, and a parking costs a
	// few microseconds). Negative: readers never park.
	ParkIdleReaders time.Duration
	// ObserveDispatch, if set, is called for every message queued to at
	// least one local connection, with the time since the proposer's stamp
	// on its entry.
	ObserveDispatch func(delay time.Duration)
	// Peers reaches and recognises the other members (see Peers); nil:
	// plain HTTP between members that do not authenticate each other.
	Peers Peers
	// MaxGroupsPerConnection bounds the groups a connection may join
	// through JoinGroup; a join past it completes with an error. 0 or
	// less: no limit.
	MaxGroupsPerConnection int
	// InvocationRate (per second) and InvocationBurst bound a
	// connection's relay invocations with a token bucket; an invocation
	// over it completes with an error. Rate 0 or less: no limit; burst
	// below 1: the rate's worth.
	InvocationRate  float64
	InvocationBurst int
	// ConnLimit counts this node's connections per remote address (429
	// past it): each negotiated connection while it lives, and each
	// WebSocket that skips negotiation while its socket is open. Nil: no
	// limit.
	ConnLimit *access.ConnLimit
	// Application hosts hub methods beyond the relay methods and hears of
	// connections coming and going (app.go). Nil: only relay methods.
	Application Application
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 32 * 1024
	}
	if o.OutboundQueue <= 0 {
		o.OutboundQueue = 4096
	}
	if o.Peers == nil {
		o.Peers = newPlainPeers()
	}
	setDefault(&o.KeepAlive, 15*time.Second)
	setDefault(&o.ClientTimeout, 30*time.Second)
	setDefault(&o.HandshakeTimeout, 15*time.Second)
	setDefault(&o.DisconnectTimeout, 15*time.Second)
	setDefault(&o.PollTimeout, 90*time.Second)
	setDefault(&o.WriteDeadline, 10*time.Second)
	setDefault(&o.ProposeTimeout, 10*time.Second)
	setDefault(&o.UpgradeWait, 5*time.Second)
	if o.ParkIdleReaders == 0 {
		o.ParkIdleReaders = netconn.DefaultParkAfter
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Server is the SignalR endpoint of one node.
type Server struct {
	cluster  Cluster
	opts     Options
	peers    Peers
	log      *slog.Logger
	relayOff map[string]bool

	mu         sync.RWMutex
	byToken    map[string]*conn
	byID       map[string]*conn
	hubs       map[string]*hubConns
	scratch    []*conn    // the dispatcher's recipient list, reused
	pageGroups groupReads // the dispatcher's group reads for the current page
	toWake     []*conn    // the dispatcher's connections to wake (wakeQueued)

	reapMu          sync.Mutex // one sweep at a time; guards lastReapApplied
	lastReapApplied uint64     // the reaper's view of the store's applied index
	dispatched      dispatchMark

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Int64 // closes being recorded in the log
	// draining is set by Drain: stateful resumes go to other nodes.
	draining atomic.Bool
	// slowCuts counts clients cut for not taking their messages in time.
	slowCuts atomic.Int64
	// results holds invocations waiting for a client's answer (clientresult.go).
	results clientResults
	// parkedReaders and parkedSSE count the WebSockets and the SSE
	// streams whose reader is parked.
	parkedReaders, parkedSSE atomic.Int64
}

// hubConns indexes a hub's active local connections.
type hubConns struct {
	conns    map[*conn]struct{}
	stateful map[*conn]struct{} // the stateful ones among conns
	users    map[string]map[*conn]struct{}
}

// NewServer returns the SignalR endpoint; Start runs its background work.
func NewServer(cluster Cluster, opts Options) *Server {
	opts.defaults()
	s := &Server{
		cluster: cluster, opts: opts, log: opts.Logger, peers: opts.Peers,
		relayOff: map[string]bool{},
		byToken:  map[string]*conn{}, byID: map[string]*conn{}, hubs: map[string]*hubConns{},
	}
	for _, h := range opts.RelayDisabled {
		s.relayOff[strings.ToLower(h)] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Start runs the dispatcher and the reaper until Stop.
func (s *Server) Start() {
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.statefulLoop() }()
	go func() { defer s.wg.Done(); s.dispatchLoop() }()
	go func() { defer s.wg.Done(); s.reapLoop() }()
	go func() { defer s.wg.Done(); s.expireOrphans() }()
}

// heldConns lists the connections this node holds, at this moment.
func (s *Server) heldConns() []*conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := make([]*conn, 0, len(s.byToken))
	for _, c := range s.byToken {
		all = append(all, c)
	}
	return all
}

// Stop closes every connection (telling clients they may reconnect) and
// waits for the background work to end.
func (s *Server) Stop() {
	for _, c := range s.heldConns() {
		c.end("", true, "server shutting down")
	}
	// Let the closes reach the log (others then know at once), briefly.
	for deadline := time.Now().Add(2 * time.Second); s.closing.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	s.cancel()
	s.wg.Wait()
}

// SlowClientsCut is how many clients were cut because they did not take
// their messages in time: a full outbound queue or a write past its
// deadline.
func (s *Server) SlowClientsCut() int64 { return s.slowCuts.Load() }

// ParkedReaders is how many of this server's WebSockets have their reader
// parked: idle, with no goroutine (see Options.ParkIdleReaders).
func (s *Server) ParkedReaders() int64 { return s.parkedReaders.Load() }

// ParkedSSE is how many of this server's SSE streams have their reader
// parked.
func (s *Server) ParkedSSE() int64 { return s.parkedSSE.Load() }

// Counts reports local connections by transport.
func (s *Server) Counts() map[string]int {
	out := map[string]int{"signalr_websockets": 0, "signalr_sse": 0, "signalr_longpolling": 0, "signalr_negotiated": 0}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.byToken {
		if c.isDone() {
			continue // an ended long-polling connection awaiting its last poll
		}
		switch c.transportName() {
		case transportWebSockets:
			out["signalr_websockets"]++
		case transportSSE:
			out["signalr_sse"]++
		case transportLongPolling:
			out["signalr_longpolling"]++
		default:
			out["signalr_negotiated"]++
		}
	}
	return out
}

// Register adds the hub routes to mux: /hubs/{hub}/negotiate and
// /hubs/{hub} for every transport request.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/hubs/{hub}/negotiate", s.cors(s.serveNegotiate))
	mux.HandleFunc("/hubs/{hub}", s.cors(s.serveHub))
}

// tokenSeparator joins a token's random part and its holder's node id; it
// cannot occur in node ids or base64url.
const tokenSeparator = "~"

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) newToken() string { return randomID() + tokenSeparator + s.cluster.NodeID() }

// holderOf names the node that holds the connection of a token.
func holderOf(token string) string {
	if i := strings.LastIndex(token, tokenSeparator); i >= 0 {
		return token[i+1:]
	}
	return ""
}

func (s *Server) lookup(token string) *conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byToken[token]
}

func (s *Server) addPending(c *conn) {
	s.mu.Lock()
	s.byToken[c.token] = c
	s.mu.Unlock()
}

// forget drops the token of an ended connection: it is unknown (404) from
// then on.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byToken[c.token] == c {
		delete(s.byToken, c.token)
	}
}

// activate indexes a connection for delivery, unless it has already ended
// (end closes done before remove takes the lock, so the two never leave an
// ended connection indexed).
func (s *Server) activate(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.isDone() {
		return
	}
	s.byID[c.id] = c
	h := s.hubs[c.hub]
	if h == nil {
		h = &hubConns{conns: map[*conn]struct{}{}, stateful: map[*conn]struct{}{}, users: map[string]map[*conn]struct{}{}}
		s.hubs[c.hub] = h
	}
	h.conns[c] = struct{}{}
	if c.mb != nil {
		h.stateful[c] = struct{}{}
	}
	if c.user != "" {
		if h.users[c.user] == nil {
			h.users[c.user] = map[*conn]struct{}{}
		}
		h.users[c.user][c] = struct{}{}
	}
}

// remove takes a connection out of delivery and, unless keepToken, forgets
// its token.
func (s *Server) remove(c *conn, keepToken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !keepToken {
		delete(s.byToken, c.token)
	}
	if s.byID[c.id] == c {
		delete(s.byID, c.id)
	}
	if h := s.hubs[c.hub]; h != nil {
		delete(h.conns, c)
		delete(h.stateful, c)
		if u := h.users[c.user]; u != nil {
			delete(u, c)
			if len(u) == 0 {
				delete(h.users, c.user)
			}
		}
		if len(h.conns) == 0 {
			delete(s.hubs, c.hub)
		}
	}
}

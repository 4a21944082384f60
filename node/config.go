package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/raftlog"
	"github.com/backplane/backplane/transport/signalr"
)

// Config is everything a node needs. cmd/node fills it from flags and the
// environment; Validate normalises and cross-checks it; nothing changes it
// after New.
type Config struct {
	ID            string
	DataDir       string
	HTTPAddr      string // listen address; port 0 picks a free port
	RaftAddr      string // listen address; port 0 picks a free port
	AdvertiseHTTP string // default: the bound HTTP address
	AdvertiseRaft string // default: the bound Raft address
	Join          []string
	JoinTimeout   time.Duration

	AdminToken string // guards /admin, /debug/pprof and node-to-node calls
	AccessKey  string // when set, REST calls need HS256 JWTs signed with it
	// JWTPublicKeyFile and JWKSFile let clients present RS256/ES256 tokens.
	JWTPublicKeyFile string
	JWKSFile         string

	// Members' authentication (docs/security.md). PeerTLS* turn on mutual
	// TLS for Raft and node-to-node HTTP; without them ClusterKey, a
	// shared secret, authenticates every Raft connection and node-to-node
	// request. A node whose -http or -raft binds beyond loopback needs one
	// of them unless InsecureCluster is set.
	PeerTLSCert     string
	PeerTLSKey      string
	PeerTLSCA       string
	ClusterKey      string
	InsecureCluster bool

	// TLSCert and TLSKey serve HTTPS and WSS to clients on HTTPAddr. The
	// files are read again when they change.
	TLSCert string
	TLSKey  string

	// JWTAudience and JWTIssuer, when set, must match a client token's aud
	// and iss claims.
	JWTAudience string
	JWTIssuer   string

	// RelayPolicy is RelayOpen or RelayRoles; empty picks RelayRoles as soon
	// as client tokens are configured, RelayOpen otherwise.
	RelayPolicy string

	// Limits per client. Zero takes the default; a negative value means
	// no limit.
	MaxGroupsPerConnection   int     // groups one connection may join (default 100)
	InvocationRate           float64 // invocations per second per connection (default 50)
	InvocationBurst          int     // invocations a connection may send at once (default 100)
	MaxConnectionsPerAddress int     // concurrent client connections per remote address (default 1000)

	// HTTP server timeouts. Zero takes the default. Long polls, SSE and
	// WebSockets keep their own rules once their request is read.
	HTTPHeaderTimeout time.Duration // reading request headers (default 10s)
	HTTPBodyTimeout   time.Duration // reading a request body (default 30s)
	HTTPIdleTimeout   time.Duration // an idle keep-alive connection (default 2m)

	// SignalR hubs.
	MaxMessageSize    int      // largest client message; default 32 KB
	AllowedOrigins    []string // browser origins allowed cross-origin
	UserClaims        []string // JWT claims for the user id; default nameid, sub
	RelayDisabledHubs []string // hubs whose relay methods are off
	// Application hosts hub logic beyond the relay methods (an upstream
	// webhook, or Go hubs); nil: relay methods only. See signalr.Application.
	Application signalr.Application
	// CloseOnTokenExpiry closes a SignalR connection when its access
	// token expires; off (the zero value) by default, as ASP.NET Core's
	// CloseOnAuthenticationExpiration.
	CloseOnTokenExpiry bool

	// Retention bounds the message history. Give every node the same
	// values: a node with smaller bounds keeps less history (indexes stay
	// the same everywhere).
	Retention    fsm.Retention
	WriteTimeout time.Duration // how long a write waits for a leader
	MaxRESTBody  int64         // bytes; larger bodies get 413

	// HolderTimeout is how long the leader waits for an unreachable node
	// before it expires the connections that node held.
	HolderTimeout time.Duration

	// RaftTiming overrides the Raft clock; zero fields keep the defaults.
	RaftTiming raftlog.Timing

	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// UnsafeNoFsync turns off fsync of the Raft log (benchmarks only).
	UnsafeNoFsync bool
	// RestoreFrom is a backup file (GET /admin/backup) to seed a new
	// one-member cluster from, when the data directory holds no Raft state
	// yet; ignored once it does. See docs/operations.md, "Backup and
	// restore".
	RestoreFrom string

	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	DefaultHTTPAddr     = "127.0.0.1:8080"
	DefaultRaftAddr     = "127.0.0.1:7000"
	DefaultWriteTimeout = 5 * time.Second
	DefaultJoinTimeout  = 2 * time.Minute
	DefaultMaxRESTBody  = 1 << 20 // Azure SignalR's REST limit

	// Log compaction: a snapshot every DefaultSnapshotThreshold entries,
	// checked every DefaultSnapshotInterval, keeping DefaultTrailingLogs
	// entries after it for lagging followers.
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 30 * time.Second
	DefaultTrailingLogs      = 10240
	// DefaultMaxMessageSize is the largest message a SignalR client may
	// send (ASP.NET Core's default).
	DefaultMaxMessageSize = 32 * 1024
	// DefaultSignalRWriteDeadline bounds one write to a SignalR client's
	// socket or event stream; a client that does not take it in time is
	// cut.
	DefaultSignalRWriteDeadline = 10 * time.Second
	// DefaultSignalRProposeTimeout bounds each change the SignalR layer
	// commits (a connection's open or close, a relay batch, a checkpoint);
	// a stateful invocation retries for three times as long.
	DefaultSignalRProposeTimeout = 10 * time.Second

	DefaultMaxGroupsPerConnection   = 100
	DefaultInvocationRate           = 50.0
	DefaultInvocationBurst          = 100
	DefaultMaxConnectionsPerAddress = 1000
	DefaultHTTPHeaderTimeout        = 10 * time.Second
	DefaultHTTPBodyTimeout          = 30 * time.Second
	DefaultHTTPIdleTimeout          = 2 * time.Minute
)

// Relay policies: who may call the relay methods (JoinGroup, SendToAll…).
const (
	// RelayOpen lets every client call every relay method.
	RelayOpen = "open"
	// RelayRoles lets a client call only what the role claim of its token
	// grants (backplane.sendToAll, backplane.joinLeaveGroup.<group>…).
	RelayRoles = "roles"
)

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate fills defaults and checks the configuration. Its errors say
// which flag to change.
func (c *Config) Validate() error {
	if c.ID == "" {
		c.ID = "node1"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.RaftAddr == "" {
		c.RaftAddr = DefaultRaftAddr
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.HolderTimeout == 0 {
		c.HolderTimeout = DefaultHolderTimeout
	}
	if c.MaxRESTBody == 0 {
		c.MaxRESTBody = DefaultMaxRESTBody
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	c.fillLimitDefaults()
	t := &c.RaftTiming
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&t.HeartbeatTimeout, raftlog.DefaultTiming.HeartbeatTimeout},
		{&t.ElectionTimeout, raftlog.DefaultTiming.ElectionTimeout},
		{&t.LeaderLeaseTimeout, raftlog.DefaultTiming.LeaderLeaseTimeout},
		{&t.CommitTimeout, raftlog.DefaultTiming.CommitTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if !nodeIDPattern.MatchString(c.ID) {
		errs = append(errs, fmt.Errorf("-id %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.ID))
	}
	for _, a := range []struct{ flag, addr string }{{"-http", c.HTTPAddr}, {"-raft", c.RaftAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port, e.g. 127.0.0.1:8080 (%v)", a.flag, a.addr, err))
		}
	}
	if _, port, _ := net.SplitHostPort(c.HTTPAddr); c.HTTPAddr == c.RaftAddr && port != "0" {
		errs = append(errs, fmt.Errorf("-http and -raft are both %q: give them different ports", c.HTTPAddr))
	}
	for _, a := range []struct{ flag, addr, listenFlag, listen string }{
		{"-advertise-http", c.AdvertiseHTTP, "-http", c.HTTPAddr},
		{"-advertise-raft", c.AdvertiseRaft, "-raft", c.RaftAddr},
	} {
		if a.addr != "" {
			if err := checkAdvertise(a.addr); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %v", a.flag, a.addr, err))
			}
		} else if unspecifiedHost(a.listen) {
			errs = append(errs, fmt.Errorf("%s %q listens on all interfaces: set %s to an address other nodes can reach", a.listenFlag, a.listen, a.flag))
		}
	}
	for i, j := range c.Join {
		norm, err := normaliseJoin(j)
		if err != nil {
			errs = append(errs, fmt.Errorf("-join %q: %v", j, err))
			continue
		}
		c.Join[i] = norm
	}
	if c.WriteTimeout < 0 || c.JoinTimeout < 0 || c.SnapshotInterval < 0 {
		errs = append(errs, errors.New("-write-timeout, -join-timeout, and -snapshot-interval must not be negative"))
	}
	if t.LeaderLeaseTimeout > t.HeartbeatTimeout || t.HeartbeatTimeout > t.ElectionTimeout {
		errs = append(errs, fmt.Errorf("Raft timing: want -raft-lease-timeout (%s) <= -raft-heartbeat-timeout (%s) <= -raft-election-timeout (%s)",
			t.LeaderLeaseTimeout, t.HeartbeatTimeout, t.ElectionTimeout))
	}
	if c.HolderTimeout < time.Second {
		errs = append(errs, fmt.Errorf("-holder-timeout %s: use at least 1s (the default is %s)", c.HolderTimeout, DefaultHolderTimeout))
	}
	if c.Retention.MaxAge < 0 {
		errs = append(errs, errors.New("-retain-age must not be negative (0 keeps messages of any age)"))
	}
	if c.MaxRESTBody < 0 {
		errs = append(errs, errors.New("-max-rest-body must be positive"))
	}
	switch c.RelayPolicy {
	case RelayOpen, RelayRoles:
	case "":
		c.RelayPolicy = RelayOpen
		if c.AccessKey != "" || c.JWTPublicKeyFile != "" || c.JWKSFile != "" {
			c.RelayPolicy = RelayRoles
		}
	default:
		errs = append(errs, fmt.Errorf("-relay-policy %q: use %q or %q", c.RelayPolicy, RelayOpen, RelayRoles))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("-tls-cert and -tls-key go together: give both or neither"))
	}
	if n := countSet(c.PeerTLSCert, c.PeerTLSKey, c.PeerTLSCA); n != 0 && n != 3 {
		errs = append(errs, errors.New("-peer-tls-cert, -peer-tls-key and -peer-tls-ca go together: give all three or none"))
	}
	if c.ClusterKey != "" {
		for i, key := range strings.Split(c.ClusterKey, ",") {
			if len(key) < 16 {
				errs = append(errs, fmt.Errorf("-cluster-key: key %d is too short: use at least 16 characters (32 random bytes, base64, recommended); a comma separates keys during a rotation", i+1))
			}
		}
	}
	if c.PeerTLSCert == "" && c.ClusterKey == "" && !c.InsecureCluster &&
		(!isLoopbackListen(c.HTTPAddr) || !isLoopbackListen(c.RaftAddr)) {
		errs = append(errs, errors.New("-http or -raft listens beyond loopback but members do not authenticate each other: "+
			"set -peer-tls-cert, -peer-tls-key and -peer-tls-ca (mutual TLS) or -cluster-key (a shared secret) on every node, "+
			"or -insecure-cluster to accept any peer (see docs/security.md)"))
	}
	if c.HTTPBodyTimeout < 0 || c.HTTPIdleTimeout < 0 || c.HTTPHeaderTimeout < 0 {
		errs = append(errs, errors.New("-http-header-timeout, -http-body-timeout and -http-idle-timeout must not be negative"))
	}
	if c.AccessKey != "" && len(c.AccessKey) < 16 {
		errs = append(errs, errors.New("-access-key is too short: use at least 16 characters (32 random bytes recommended)"))
	}
	return errors.Join(errs...)
}

func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

func checkAdvertise(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port (%v)", err)
	}
	if unspecifiedHost(addr) {
		return errors.New("must name a reachable host, not 0.0.0.0 or ::")
	}
	if port == "0" || port == "" {
		return errors.New("must name a port")
	}
	return nil
}

// normaliseJoin accepts host:port or http(s)://host:port and returns a base
// URL without a trailing slash.
func normaliseJoin(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: use http or https", u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", fmt.Errorf("want host:port (%v)", err)
	}
	return u.Scheme + "://" + u.Host, nil
}

// fillLimitDefaults gives the per-client limits and HTTP timeouts their
// defaults where they are zero.
func (c *Config) fillLimitDefaults() {
	if c.MaxGroupsPerConnection == 0 {
		c.MaxGroupsPerConnection = DefaultMaxGroupsPerConnection
	}
	if c.InvocationRate == 0 {
		c.InvocationRate = DefaultInvocationRate
	}
	if c.InvocationBurst == 0 {
		c.InvocationBurst = DefaultInvocationBurst
	}
	if c.MaxConnectionsPerAddress == 0 {
		c.MaxConnectionsPerAddress = DefaultMaxConnectionsPerAddress
	}
	if c.HTTPHeaderTimeout == 0 {
		c.HTTPHeaderTimeout = DefaultHTTPHeaderTimeout
	}
	if c.HTTPBodyTimeout == 0 {
		c.HTTPBodyTimeout = DefaultHTTPBodyTimeout
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
}

func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

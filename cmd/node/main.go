// Command backplane runs one Backplane node: a realtime hub server whose
// nodes form a Raft cluster and replicate one ordered message log.
//
// Every flag can also be set through the environment as BACKPLANE_<NAME>
// (upper case, dashes as underscores); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/node"
	"github.com/backplane/backplane/raftlog"
	"github.com/backplane/backplane/upstream"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "backplane:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, logLevel, logFormat, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = newLogger(stderr, logLevel, logFormat)
	if u, ok := cfg.Application.(*upstream.Upstream); ok {
		u.SetLogger(cfg.Logger)
		defer u.Close() // logs the connection events still queued
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return n.Run(ctx)
}

func parseFlags(args []string, stderr io.Writer) (node.Config, slog.Level, string, error) {
	fs := flag.NewFlagSet("backplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg                           node.Config
		join                          string
		logLevel                      string
		logFormat                     string
		maxBytes                      uint64
		origins, userClaims, relayOff string
		upRules, upKeys               upstream.ListFlag
		upTimeout                     time.Duration
		upConnect                     bool
	)
	fs.StringVar(&cfg.ID, "id", "node1", "node ID, unique in the cluster")
	fs.StringVar(&cfg.DataDir, "data", "./data", "data directory (Raft log, snapshots, store)")
	fs.StringVar(&cfg.HTTPAddr, "http", node.DefaultHTTPAddr, "HTTP listen address: clients, REST API, admin (port 0 picks one)")
	fs.StringVar(&cfg.RaftAddr, "raft", node.DefaultRaftAddr, "Raft TCP listen address (port 0 picks one)")
	fs.StringVar(&cfg.AdvertiseHTTP, "advertise-http", "", "HTTP address other nodes use to reach this one (default: the bound -http address)")
	fs.StringVar(&cfg.AdvertiseRaft, "advertise-raft", "", "Raft address other nodes use to reach this one (default: the bound -raft address)")
	fs.StringVar(&join, "join", "", "comma-separated HTTP addresses of members to join through (host:port or http://host:port); ignored once this node has Raft state")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", node.DefaultJoinTimeout, "how long -join keeps retrying")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token for /admin, /debug/pprof and node-to-node calls (default: none, admin from loopback only)")
	fs.StringVar(&cfg.AccessKey, "access-key", "", "when set, the REST API and client connections need HS256 JWTs signed with this key")
	fs.Uint64Var(&cfg.Retention.MaxMessages, "retain-messages", fsm.DefaultRetention.MaxMessages, "keep at most this many messages (0: no count limit)")
	fs.Uint64Var(&maxBytes, "retain-bytes", fsm.DefaultRetention.MaxBytes, "keep at most this many bytes of messages (0: no size limit)")
	fs.DurationVar(&cfg.Retention.MaxAge, "retain-age", fsm.DefaultRetention.MaxAge, "keep messages at most this long (0: no age limit)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", node.DefaultWriteTimeout, "how long a write waits for a leader before 503")
	fs.Int64Var(&cfg.MaxRESTBody, "max-rest-body", node.DefaultMaxRESTBody, "largest REST request body in bytes (larger: 413)")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", node.DefaultSnapshotThreshold, "Raft entries between snapshots (log compaction)")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", node.DefaultSnapshotInterval, "how often to check whether a snapshot is due")
	fs.Uint64Var(&cfg.TrailingLogs, "trailing-logs", node.DefaultTrailingLogs, "Raft entries kept after a snapshot for lagging followers")
	fs.DurationVar(&cfg.RaftTiming.HeartbeatTimeout, "raft-heartbeat-timeout", raftlog.DefaultTiming.HeartbeatTimeout, "Raft: a follower without contact from the leader this long starts an election")
	fs.DurationVar(&cfg.RaftTiming.ElectionTimeout, "raft-election-timeout", raftlog.DefaultTiming.ElectionTimeout, "Raft: how long a candidate waits for votes")
	fs.DurationVar(&cfg.RaftTiming.LeaderLeaseTimeout, "raft-lease-timeout", raftlog.DefaultTiming.LeaderLeaseTimeout, "Raft: a leader that misses a quorum this long steps down")
	fs.DurationVar(&cfg.RaftTiming.CommitTimeout, "raft-commit-timeout", raftlog.DefaultTiming.CommitTimeout, "Raft: idle interval after which the leader tells followers the commit index")
	fs.StringVar(&cfg.RestoreFrom, "restore", "", "seed a new one-member cluster from this backup file (GET /admin/backup) when the data directory has no Raft state yet; needs a concrete -raft or -advertise-raft address; ignored afterwards")
	fs.BoolVar(&cfg.UnsafeNoFsync, "unsafe-no-fsync", false, "do not fsync the Raft log (benchmarks only: a power loss can lose acknowledged messages)")
	fs.StringVar(&cfg.JWTPublicKeyFile, "jwt-public-key", "", "PEM file with an RSA or EC public key: clients may present RS256/ES256 tokens it verifies")
	fs.StringVar(&cfg.JWKSFile, "jwks-file", "", "JWKS file (RSA and P-256 EC keys, matched by kid): clients may present RS256/ES256 tokens they verify")
	fs.DurationVar(&cfg.HolderTimeout, "holder-timeout", node.DefaultHolderTimeout, "how long the leader waits for an unreachable node before expiring the client connections it held (stateful clients can resume elsewhere until then)")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", node.DefaultMaxMessageSize, "largest message a SignalR client may send, in bytes (larger: the connection is closed)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated browser origins allowed cross-origin on /hubs (CORS with credentials, WebSocket origin check)")
	fs.StringVar(&userClaims, "user-claims", strings.Join(node.DefaultUserClaims, ","), "comma-separated JWT claims a SignalR connection's user id is read from, first present wins")
	fs.BoolVar(&cfg.CloseOnTokenExpiry, "close-on-token-expiry", false, "close a SignalR connection (the client may reconnect) when its access token expires; by default, as in ASP.NET Core, an open connection outlives its token")
	fs.StringVar(&relayOff, "relay-disabled-hubs", "", "comma-separated hubs whose relay methods (JoinGroup, SendToAll, ...) are switched off")
	fs.StringVar(&cfg.PeerTLSCert, "peer-tls-cert", "", "PEM certificate this node presents to other members (mutual TLS for Raft and node-to-node HTTP; with -peer-tls-key and -peer-tls-ca)")
	fs.StringVar(&cfg.PeerTLSKey, "peer-tls-key", "", "PEM private key of -peer-tls-cert")
	fs.StringVar(&cfg.PeerTLSCA, "peer-tls-ca", "", "PEM CA certificates that sign the members' certificates: a peer without one is refused")
	fs.StringVar(&cfg.ClusterKey, "cluster-key", "", "shared secret that authenticates members to each other when there are no peer certificates (it never crosses the wire)")
	fs.BoolVar(&cfg.InsecureCluster, "insecure-cluster", false, "allow -http or -raft beyond loopback with no member authentication (any host that reaches the ports can join the log)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate for HTTPS and WSS on -http (re-read when the file changes)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&cfg.JWTAudience, "jwt-audience", "", "when set, client tokens must carry this aud claim")
	fs.StringVar(&cfg.JWTIssuer, "jwt-issuer", "", "when set, client tokens must carry this iss claim")
	fs.StringVar(&cfg.RelayPolicy, "relay-policy", "", "who may call relay methods: open (everyone) or roles (what the token's role claim grants); default roles once client tokens are configured, else open")
	fs.IntVar(&cfg.MaxGroupsPerConnection, "max-groups-per-connection", node.DefaultMaxGroupsPerConnection, "groups one client connection may join (-1: no limit)")
	fs.Float64Var(&cfg.InvocationRate, "invocation-rate", node.DefaultInvocationRate, "hub invocations per second one connection may make; more get error completions (-1: no limit)")
	fs.IntVar(&cfg.InvocationBurst, "invocation-burst", node.DefaultInvocationBurst, "hub invocations one connection may make at once, above -invocation-rate")
	fs.IntVar(&cfg.MaxConnectionsPerAddress, "max-connections-per-address", node.DefaultMaxConnectionsPerAddress, "concurrent client connections from one remote address (-1: no limit)")
	fs.DurationVar(&cfg.HTTPHeaderTimeout, "http-header-timeout", node.DefaultHTTPHeaderTimeout, "how long a client may take to send request headers")
	fs.DurationVar(&cfg.HTTPBodyTimeout, "http-body-timeout", node.DefaultHTTPBodyTimeout, "how long a client may take to send a request body")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", node.DefaultHTTPIdleTimeout, "how long an idle keep-alive connection is kept open")
	fs.Var(&upRules, "upstream", "webhook for hub logic, as Azure SignalR serverless upstreams (repeatable, first match wins): URL_TEMPLATE or hub=PATTERN;category=PATTERN;event=PATTERN;URL_TEMPLATE with {hub}, {category}, {event} (docs/upstream.md)")
	fs.Var(&upKeys, "upstream-key", "key that signs upstream requests (X-ASRS-Signature); repeat for rotation")
	fs.DurationVar(&upTimeout, "upstream-timeout", upstream.DefaultTimeout, "how long one upstream request may take")
	fs.BoolVar(&upConnect, "upstream-connect-event", false, "ask the upstream (connections/connect) before accepting a connection: 401/403 refuse it")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, "", err
	}
	if fs.NArg() > 0 {
		return cfg, 0, "", fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	if err := applyEnv(fs); err != nil {
		return cfg, 0, "", err
	}
	cfg.Retention.MaxBytes = maxBytes
	cfg.Join = splitList(join)
	cfg.AllowedOrigins = splitList(origins)
	cfg.UserClaims = splitList(userClaims)
	cfg.RelayDisabledHubs = splitList(relayOff)
	if ucfg, ok, err := upstream.FromFlags(upRules, upKeys, upTimeout, upConnect); err != nil {
		return cfg, 0, "", err
	} else if ok {
		u, err := upstream.New(ucfg)
		if err != nil {
			return cfg, 0, "", err
		}
		cfg.Application = u
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, 0, "", fmt.Errorf("-log-level %q: use debug, info, warn or error", logLevel)
	}
	if logFormat != "text" && logFormat != "json" {
		return cfg, 0, "", fmt.Errorf("-log-format %q: use text or json", logFormat)
	}
	return cfg, level, logFormat, nil
}

// applyEnv sets every flag not given on the command line from
// BACKPLANE_<NAME>, if that variable is set.
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "BACKPLANE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Package upstream is a signalr.Application that forwards hub traffic to
// HTTP webhooks the way Azure SignalR Service does in serverless mode:
// connections/connected, connections/disconnected and messages/<target>
// POSTs with the X-ASRS-* headers and signature, so an Azure Functions
// SignalR-trigger app (or any server speaking that protocol) can be the
// hub logic of a Backplane cluster. See docs/upstream.md.
package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/backplane/backplane/transport/signalr"
)

// Defaults.
const (
	// DefaultTimeout is the time one POST may take: Azure's emulator uses
	// HttpClient's default of 100 s.
	DefaultTimeout = 100 * time.Second
	// DefaultMaxAnswer is the largest answer body read (Azure: 16 MiB).
	DefaultMaxAnswer = 16 << 20
	// DefaultEventQueue is how many connection events may wait for
	// delivery; more are dropped (and logged).
	DefaultEventQueue = 10000
	// DefaultEventAttempts bounds the attempts to deliver one event.
	DefaultEventAttempts = 6
	// DefaultEventMaxAge bounds how long one event is retried.
	DefaultEventMaxAge = 2 * time.Minute
)

// Header names, as Azure sends them.
const (
	HeaderConnectionID = "X-ASRS-Connection-Id"
	HeaderHub          = "X-ASRS-Hub"
	HeaderCategory     = "X-ASRS-Category"
	HeaderEvent        = "X-ASRS-Event"
	HeaderUserID       = "X-ASRS-User-Id"
	HeaderUserClaims   = "X-ASRS-User-Claims"
	HeaderClientQuery  = "X-ASRS-Client-Query"
	HeaderSignature    = "X-ASRS-Signature"
)

// Categories and events.
const (
	CategoryConnections = "connections"
	CategoryMessages    = "messages"
	EventConnected      = "connected"
	EventDisconnected   = "disconnected"
	// EventConnect is Backplane's optional blocking connect event (Azure
	// SignalR has none; Web PubSub does).
	EventConnect = "connect"
)

// Config configures an Upstream.
type Config struct {
	// Rules are the upstream items, tried in order (at least one).
	Rules []Rule
	// Keys sign each request (X-ASRS-Signature, one value per key, for key
	// rotation). None: no signature header.
	Keys []string
	// Timeout bounds one POST (default DefaultTimeout).
	Timeout time.Duration
	// ConnectEvent sends a blocking connections/connect POST before a
	// connection is accepted; 401 or 403 refuse it.
	ConnectEvent bool
	// MaxAnswer bounds an answer body (default DefaultMaxAnswer).
	MaxAnswer int64
	// EventQueue, EventAttempts and EventMaxAge bound the delivery of
	// connected/disconnected events (defaults DefaultEvent*).
	EventQueue    int
	EventAttempts int
	EventMaxAge   time.Duration
	// EventBackoff is the first retry's delay, doubled each time up to
	// 30 s (default 200 ms).
	EventBackoff time.Duration
	// Client sends the requests (default: a client that follows no
	// redirects, so only the configured URLs are ever called).
	Client *http.Client
	// Logger logs dropped events and failures (default slog.Default()).
	Logger *slog.Logger
}

// Upstream implements signalr.Application with HTTP webhooks.
type Upstream struct {
	cfg    Config
	log    *slog.Logger
	events *eventQueue
}

var _ signalr.Application = (*Upstream)(nil)

// New checks cfg and starts the connection-event workers; Close stops them.
func New(cfg Config) (*Upstream, error) {
	if len(cfg.Rules) == 0 {
		return nil, errors.New("upstream: no rules")
	}
	for i, r := range cfg.Rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("upstream: rule %d: %w", i+1, err)
		}
	}
	for _, k := range cfg.Keys {
		if k == "" {
			return nil, errors.New("upstream: empty key")
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAnswer <= 0 {
		cfg.MaxAnswer = DefaultMaxAnswer
	}
	if cfg.EventQueue <= 0 {
		cfg.EventQueue = DefaultEventQueue
	}
	if cfg.EventAttempts <= 0 {
		cfg.EventAttempts = DefaultEventAttempts
	}
	if cfg.EventMaxAge <= 0 {
		cfg.EventMaxAge = DefaultEventMaxAge
	}
	if cfg.EventBackoff <= 0 {
		cfg.EventBackoff = 200 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u := &Upstream{cfg: cfg, log: cfg.Logger.With("component", "upstream")}
	u.events = newEventQueue(u)
	return u, nil
}

// SetLogger replaces the logger; call it before the Upstream is used.
func (u *Upstream) SetLogger(l *slog.Logger) { u.log = l.With("component", "upstream") }

// Close stops delivering connection events; those still queued are
// dropped (and counted in the log).
func (u *Upstream) Close() { u.events.close() }

// Signature returns the X-ASRS-Signature value for a connection id:
// "sha256=<hex HMAC-SHA256(key, id)>" per key, joined by "," with no
// spaces (the Functions extension splits without trimming).
func Signature(keys []string, connID string) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(connID))
		parts = append(parts, "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(parts, ",")
}

// request is one POST to an upstream.
type request struct {
	url         string
	c           *signalr.ConnInfo
	category    string
	event       string
	contentType string
	body        []byte
}

// answer is an upstream's answer.
type answer struct {
	status int
	body   []byte
}

// post sends one request and reads its answer (at most MaxAnswer bytes).
func (u *Upstream) post(ctx context.Context, rq request) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rq.url, bytes.NewReader(rq.body))
	if err != nil {
		return answer{}, fmt.Errorf("upstream request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", rq.contentType)
	h.Set(HeaderConnectionID, rq.c.ID)
	h.Set(HeaderHub, rq.c.Hub)
	h.Set(HeaderCategory, rq.category)
	h.Set(HeaderEvent, rq.event)
	if rq.c.UserID != "" {
		h.Set(HeaderUserID, rq.c.UserID)
	}
	if len(rq.c.Claims) > 0 {
		parts := make([]string, len(rq.c.Claims))
		for i, cl := range rq.c.Claims {
			parts[i] = cl.Type + ": " + cl.Value
		}
		h.Set(HeaderUserClaims, strings.Join(parts, ", "))
	}
	if len(rq.c.Query) > 0 {
		h.Set(HeaderClientQuery, "?"+rq.c.Query.Encode())
	}
	if len(u.cfg.Keys) > 0 {
		h.Set(HeaderSignature, Signature(u.cfg.Keys, rq.c.ID))
	}
	resp, err := u.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return answer{}, fmt.Errorf("the upstream did not answer within %s", u.cfg.Timeout)
		}
		// Not the *url.Error itself: its text holds the URL, whose query
		// may carry a secret (Functions' ?code=), and this text reaches
		// clients in error completions and the log.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return answer{}, fmt.Errorf("upstream POST %s/%s: %w", rq.category, rq.event, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, u.cfg.MaxAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, fmt.Errorf("the upstream did not answer within %s", u.cfg.Timeout)
		}
		return answer{}, fmt.Errorf("reading the upstream's answer: %w", err)
	}
	if int64(len(body)) > u.cfg.MaxAnswer {
		return answer{}, fmt.Errorf("the upstream's answer is larger than %d bytes", u.cfg.MaxAnswer)
	}
	return answer{status: resp.StatusCode, body: body}, nil
}

// ok reports a 2xx status.
func (a answer) ok() bool { return a.status >= 200 && a.status < 300 }

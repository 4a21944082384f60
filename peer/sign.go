package peer

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The headers of a request signed with the cluster key.
const (
	HeaderNode      = "Backplane-Peer-Node"      // the sender's node id
	HeaderTime      = "Backplane-Peer-Time"      // unix seconds when signed
	HeaderNonce     = "Backplane-Peer-Nonce"     // random, never accepted twice
	HeaderSignature = "Backplane-Peer-Signature" // base64 HMAC-SHA256
)

const (
	// signVersion starts the canonical string; a new scheme gets a new one.
	signVersion = "backplane-peer-http-v1"
	// unsignedBody stands for the body hash of a request whose body is
	// streamed and so not covered by the signature.
	unsignedBody = "UNSIGNED-BODY"
	// signWindow is how far a signature's time may be from this node's
	// clock, either way.
	signWindow = 60 * time.Second
	// maxSignedBody bounds the body Verify reads to check its hash.
	maxSignedBody = 8 << 20
	// maxReplayEntries bounds the replay cache: about 4,000 signed
	// requests a second, sustained over the two-minute memory of a nonce.
	maxReplayEntries = 1 << 19
	nonceLen         = 16
)

// Sign adds the cluster-key signature headers to req (ModeKey only; in the
// other modes it does nothing). body is the exact request body, or nil
// when the body is streamed and left out of the signature. The key itself
// never goes on the wire.
func (a *Auth) Sign(req *http.Request, body []byte) {
	if a.mode != ModeKey {
		return
	}
	var n [nonceLen]byte
	_, _ = rand.Read(n[:]) // crypto/rand.Read never fails
	ts := strconv.FormatInt(a.now().Unix(), 10)
	nonce := base64.RawURLEncoding.EncodeToString(n[:])
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(HeaderNode, a.nodeID)
	req.Header.Set(HeaderTime, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, base64.StdEncoding.EncodeToString(
		httpMAC(a.httpKeys[0], a.nodeID, ts, nonce, req.Method, req.URL.RequestURI(), bodyHash(body))))
}

func bodyHash(body []byte) string {
	if body == nil {
		return unsignedBody
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// httpMAC is the HMAC of the canonical string of a signed request.
func httpMAC(key []byte, node, ts, nonce, method, uri, bodyHash string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join([]string{signVersion, node, ts, nonce, method, uri, bodyHash}, "\n")))
	return m.Sum(nil)
}

// Verify returns nil only if r comes from an authenticated member: with
// peer TLS, a client certificate that chains to the peer CA; with the
// cluster key, a valid, fresh, never-seen signature. Without member
// authentication it returns ErrNoPeerAuth; a refusal wraps
// ErrUnauthenticated. When the signature covers a body, Verify reads it
// (at most 8 MiB) and puts it back in r.Body.
func (a *Auth) Verify(r *http.Request) error {
	switch a.mode {
	case ModeTLS:
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return fmt.Errorf("%w: no verified member certificate", ErrUnauthenticated)
		}
		// Checked again against the current CA, so a CA taken out of the
		// bundle stops kept-alive connections too.
		if err := verifyChain(r.TLS.PeerCertificates, a.peerCA.get().pool, x509.ExtKeyUsageClientAuth); err != nil {
			return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		return nil
	case ModeKey:
		return a.verifySignature(r)
	}
	return ErrNoPeerAuth
}

func (a *Auth) verifySignature(r *http.Request) error {
	node, ts, nonce := r.Header.Get(HeaderNode), r.Header.Get(HeaderTime), r.Header.Get(HeaderNonce)
	sig64 := r.Header.Get(HeaderSignature)
	if node == "" || ts == "" || nonce == "" || sig64 == "" {
		return fmt.Errorf("%w: no cluster-key signature (%s headers)", ErrUnauthenticated, HeaderSignature)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad %s %q", ErrUnauthenticated, HeaderTime, ts)
	}
	signed, now := time.Unix(secs, 0), a.now()
	if skew := now.Sub(signed); skew > signWindow || skew < -signWindow {
		return fmt.Errorf("%w: signature time is %v off this node's clock (allowed ±%v)",
			ErrUnauthenticated, skew.Round(time.Second), signWindow)
	}
	var key [nonceLen]byte
	if n, err := base64.RawURLEncoding.Decode(key[:], []byte(nonce)); err != nil || n != nonceLen ||
		len(nonce) != base64.RawURLEncoding.EncodedLen(nonceLen) {
		return fmt.Errorf("%w: bad %s", ErrUnauthenticated, HeaderNonce)
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		return fmt.Errorf("%w: bad %s: %w", ErrUnauthenticated, HeaderSignature, err)
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	if !a.signedBy(sig, node, ts, nonce, r.Method, uri, unsignedBody) {
		body, err := readBody(r)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		if !a.signedBy(sig, node, ts, nonce, r.Method, uri, bodyHash(body)) {
			return fmt.Errorf("%w: bad signature from %q (wrong cluster key, or the request or its body was changed)",
				ErrUnauthenticated, node)
		}
	}
	// Only a valid signature reaches the cache, so strangers cannot fill it.
	if err := a.replay.add(key, signed.Add(signWindow+time.Second), now); err != nil {
		return fmt.Errorf("%w: from %q: %w", ErrUnauthenticated, node, err)
	}
	return nil
}

// signedBy reports whether sig is the signature of the request under any
// of the accepted keys.
func (a *Auth) signedBy(sig []byte, node, ts, nonce, method, uri, bodyHash string) bool {
	for _, k := range a.httpKeys {
		if hmac.Equal(sig, httpMAC(k, node, ts, nonce, method, uri, bodyHash)) {
			return true
		}
	}
	return false
}

// readBody reads r.Body whole (bounded) and puts the bytes back.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("read signed body: %w", err)
	}
	if len(body) > maxSignedBody {
		return nil, fmt.Errorf("signed body over %d bytes", maxSignedBody)
	}
	return body, nil
}

// errReplayed: a nonce was seen before.
var errReplayed = errors.New("replayed request (nonce already seen)")

// replayCache remembers the nonces of accepted signatures until their time
// leaves the window, after which the time check refuses them anyway.
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[[nonceLen]byte]time.Time // nonce → when it may be forgotten
	order []replayEntry                // insertion order, from head
	head  int
}

type replayEntry struct {
	key    [nonceLen]byte
	expiry time.Time
}

func newReplayCache(limit int) *replayCache {
	return &replayCache{max: limit, seen: make(map[[nonceLen]byte]time.Time)}
}

// add records key, or fails if it was seen or the cache is full. A full
// cache refuses rather than forgets, so it can never let a replay in.
func (c *replayCache) add(key [nonceLen]byte, expiry, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head < len(c.order) && !c.order[c.head].expiry.After(now) {
		e := c.order[c.head]
		if c.seen[e.key].Equal(e.expiry) {
			delete(c.seen, e.key)
		}
		c.head++
	}
	if c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	if _, ok := c.seen[key]; ok {
		return errReplayed
	}
	if len(c.seen) >= c.max {
		return fmt.Errorf("replay cache full (%d signed requests in the last %v)", c.max, 2*signWindow)
	}
	c.seen[key] = expiry
	c.order = append(c.order, replayEntry{key: key, expiry: expiry})
	return nil
}

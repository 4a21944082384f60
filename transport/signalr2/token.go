package signalr2

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The tokens a SignalR 2 connection carries are signed with keys every
// member of the cluster shares, so each node verifies the tokens the
// others issued. Each kind of token has its own key, derived from the
// configured secret with HMAC-SHA256, so one kind can never pass for the
// other and the configured secret itself never signs client-visible data.

// Purposes of the derived keys.
const (
	purposeConnection = "backplane signalr2 connection token v1"
	purposeGroups     = "backplane signalr2 groups token v1"
)

// Token errors.
var (
	// ErrBadToken: a token that is malformed or whose signature does not
	// verify with any key.
	ErrBadToken = errors.New("invalid token")
)

// signer signs and verifies one kind of token. The first key signs; every
// key verifies (a rotation lists the new key first).
type signer struct{ keys [][]byte }

func newSigner(secrets [][]byte, purpose string) signer {
	s := signer{}
	for _, k := range secrets {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(purpose))
		s.keys = append(s.keys, m.Sum(nil))
	}
	return s
}

func (s signer) mac(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// sign returns base64url(payload) "." base64url(mac).
func (s signer) sign(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(s.mac(s.keys[0], payload))
}

// open verifies a signed token and returns its payload.
func (s signer) open(tok string) (string, error) {
	body, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return "", fmt.Errorf("%w: not a signed token", ErrBadToken)
	}
	enc := base64.RawURLEncoding
	payload, err := enc.DecodeString(body)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	mac, err := enc.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	for _, k := range s.keys {
		if hmac.Equal(mac, s.mac(k, string(payload))) {
			return string(payload), nil
		}
	}
	return "", fmt.Errorf("%w: the signature does not verify", ErrBadToken)
}

// connToken is what a connection token says: whose connection it is. As
// in ASP.NET SignalR 2, it binds the connection id to the user that
// negotiated it.
type connToken struct {
	ConnID string `json:"c"`
	User   string `json:"u,omitempty"`
}

func (s signer) connectionToken(t connToken) string {
	b, _ := json.Marshal(t) // two strings: cannot fail
	return s.sign(string(b))
}

func (s signer) openConnectionToken(tok string) (connToken, error) {
	payload, err := s.open(tok)
	if err != nil {
		return connToken{}, err
	}
	var t connToken
	if err := json.Unmarshal([]byte(payload), &t); err != nil || t.ConnID == "" {
		return connToken{}, fmt.Errorf("%w: malformed connection token", ErrBadToken)
	}
	return t, nil
}

// groupsToken is what a groups token says: the groups of each hub a
// connection was in when the token was issued.
type groupsToken struct {
	ConnID string              `json:"c"`
	Groups map[string][]string `json:"g"`
}

func (s signer) groupsToken(connID string, groups map[string][]string) string {
	b, _ := json.Marshal(groupsToken{ConnID: connID, Groups: groups}) // strings only: cannot fail
	return s.sign(string(b))
}

// openGroupsToken verifies a groups token issued to connID and returns its
// groups per hub.
func (s signer) openGroupsToken(tok, connID string) (map[string][]string, error) {
	payload, err := s.open(tok)
	if err != nil {
		return nil, err
	}
	var t groupsToken
	if err := json.Unmarshal([]byte(payload), &t); err != nil {
		return nil, fmt.Errorf("%w: malformed groups token", ErrBadToken)
	}
	if t.ConnID != connID {
		return nil, fmt.Errorf("%w: the groups token belongs to another connection", ErrBadToken)
	}
	return t.Groups, nil
}

// sameGroups reports whether two per-hub group lists (each sorted) are
// equal.
func sameGroups(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for hub, ga := range a {
		if !slices.Equal(ga, b[hub]) {
			return false
		}
	}
	return true
}

// newConnectionID returns a random connection id shaped like the GUIDs
// ASP.NET SignalR 2 issues.
func newConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

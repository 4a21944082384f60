// Package peer owns how the members of a Backplane cluster prove who they
// are to each other, and the one HTTP client every node-to-node call goes
// through.
//
// There are three modes, picked from the configuration:
//
//   - ModeTLS (-peer-tls-cert, -peer-tls-key, -peer-tls-ca): mutual TLS on
//     the Raft port and on node-to-node HTTP. A peer is a member when its
//     certificate chains to the peer CA. Only the chain is checked, never a
//     host name, so the peer CA must be dedicated to this cluster: every
//     certificate it signs is a member. Member certificates are used both
//     as server and as client certificates, so they need both the
//     serverAuth and clientAuth extended key usages (or none at all).
//   - ModeKey (-cluster-key): a shared secret. Every Raft connection runs a
//     mutual challenge–response when it opens and every node-to-node HTTP
//     request carries an HMAC signature with a timestamp and a nonce. The
//     secret never crosses the wire, and sub-keys derived from it for each
//     use keep a Raft proof from being replayed as an HTTP one. For
//     rotation the key may be a comma-separated list: the first proves,
//     every one is accepted. ModeKey authenticates but does not encrypt:
//     on an untrusted network use TLS.
//   - ModeNone: members are not authenticated; the caller decides what to
//     do about that (Verify returns ErrNoPeerAuth).
//
// Client TLS (-tls-cert, -tls-key) is independent of the mode: it serves
// HTTPS and WSS to clients on the HTTP port. The HTTP port splits its TLS
// by SNI: a member asks for ServerName and gets the peer certificate and a
// required client certificate; anyone else gets the client certificate and
// may, but need not, present a member certificate. Certificate, key and CA
// files are re-read when they change (checked at most once a second), so
// rotating them needs no restart.
//
// What it must not know: Raft state, the fsm, or HTTP routes. It hands
// raftlog a raft.StreamLayer and node an *http.Client, a tls.Config and a
// Verify function; which endpoints need a member is the caller's business.
package peer

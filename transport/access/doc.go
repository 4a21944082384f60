// Package access decides what a client may do, for every client endpoint
// (the SignalR layer and the native streams): the relay permissions a
// token's role claim grants and the relay policy, which browser origins
// may call, how many connections one address may hold, and how fast a
// connection may invoke (RateBucket). It owns no connections and knows
// neither the log nor any wire protocol.
package access

// Package signalr2 serves the ASP.NET SignalR 2 hubs protocol (as the 2.4
// clients speak it: the jQuery client and Microsoft.AspNet.SignalR.Client)
// at /signalr: negotiate, connect, start, send, poll, reconnect, abort and
// ping over WebSockets, Server-Sent Events and long polling, and the
// generated proxy script at /signalr/hubs.
//
// A SignalR 2 connection is a cursor reader of the replicated log. The
// message id the client keeps (the envelope's "C", sent back as messageId
// with every poll and reconnect) is a message index of the log, so any node
// can serve any poll or reconnect of any connection from its own store:
// exactly the messages after the cursor that are addressed to the
// connection (its hubs' broadcasts, its groups, its user, itself), in log
// order, with no sticky sessions and nothing buffered per connection.
//
// The package writes nothing to the log itself: it asks the node, through
// the Cluster interface, to record a connection, to add it to groups, to
// close it, and to commit the relay methods' sends. Group membership is
// replicated; the signed groups token only restores it when a reconnect
// finds the connection's record gone.
//
// When the node has an Application (package transport/signalr's seam: an
// upstream webhook or Go hubs), hub invocations that are not relay methods
// the client may call go to it, one at a time per connection, and it is
// asked at /connect and told of connections per hub (app.go).
package signalr2

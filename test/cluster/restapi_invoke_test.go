package cluster

import "testing"

// TestRestAPIInvokeOfficialClient runs test/signalr/clientresult.test.mjs
// on three nodes: POST .../connections/{id}/:invoke, sent to a node that
// does not hold the connection, answered by @microsoft/signalr's
// connection.on(...) handler over WebSockets (JSON and MessagePack) and
// long polling: its value, its thrown error, no answer within the
// timeout; and stream items sent through the other nodes arriving in
// order, then the stream's completion.
func TestRestAPIInvokeOfficialClient(t *testing.T) {
	runSignalRSuite(t, "clientresult.test.mjs")
}

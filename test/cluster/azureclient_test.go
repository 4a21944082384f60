package cluster

import "testing"

// TestAzureClientURL runs test/signalr/azureclient.test.mjs: the official
// client on every transport at Azure SignalR Service's client URL,
// "<endpoint>/client/?hub=<hub>", with a token shaped as Azure's negotiate
// binding makes it (audience that URL, user id in asrs.s.uid), so a
// serverless application's negotiate works unchanged.
func TestAzureClientURL(t *testing.T) {
	runSignalRSuite(t, "azureclient.test.mjs")
}

package cluster

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"
)

// -tls-cert and -tls-key serve HTTPS (and the native streams over it) on
// -http, and a new certificate written over the files is served from the
// next connection on, without a restart.
func TestClientTLSServesHTTPSAndPicksUpNewCertificates(t *testing.T) {
	n := startNode(t, nodeOptions{ID: "n1", ClientTLS: true})
	waitFor(t, 15*time.Second, "n1 to be ready over HTTPS", func() (bool, string) { return ready(n) })
	idx := mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("secure", "hello"), "")
	stream := openSSE(t, n, "chat", url.Values{"after": {"0"}}, nil, 20*time.Second)
	ev, err := stream.Next()
	for err == nil && ev.ID == "" {
		ev, err = stream.Next()
	}
	if err != nil || ev.ID != fmt.Sprint(idx) {
		t.Fatalf("SSE over HTTPS: event %+v, %v, want id %d", ev, err, idx)
	}
	if cn := servedName(t, n); cn != "client-n1" {
		t.Fatalf("served certificate %q, want client-n1", cn)
	}
	// Rotate: write a new certificate and key over the files.
	c, k, err := clusterCA.Issue("client-n1-rotated")
	if err != nil {
		t.Fatal(err)
	}
	files := n.clientCert()
	for path, data := range map[string][]byte{files.Cert + ".tmp": c, files.Key + ".tmp": k} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(files.Key+".tmp", files.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(files.Cert+".tmp", files.Cert); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node to serve the rotated certificate", func() (bool, string) {
		cn := servedName(t, n)
		return cn == "client-n1-rotated", "serves " + cn
	})
	mustPublishTo(t, n, "/api/v1/hubs/chat", messageBody("after", "rotation"), "")
}

// servedName dials n's HTTP port with TLS and returns the common name of
// the certificate it presents.
func servedName(t *testing.T, n *node) string {
	t.Helper()
	conn, err := tls.Dial("tcp", n.httpAddr, &tls.Config{RootCAs: clusterCA.Pool(), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", n.id, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

package node

import (
	"strings"
	"testing"
)

func TestValidateNamesTheFlagToChange(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad id", Config{ID: "no spaces"}, "-id"},
		{"same ports", Config{HTTPAddr: "127.0.0.1:9000", RaftAddr: "127.0.0.1:9000"}, "different ports"},
		{"bad http", Config{HTTPAddr: "localhost"}, "-http"},
		{"wildcard raft without advertise", Config{RaftAddr: "0.0.0.0:7000"}, "-advertise-raft"},
		{"wildcard advertise", Config{AdvertiseHTTP: "0.0.0.0:8080"}, "-advertise-http"},
		{"bad join", Config{Join: []string{"ftp://x:1"}}, "-join"},
		{"join without port", Config{Join: []string{"localhost"}}, "-join"},
		{"short access key", Config{AccessKey: "short"}, "-access-key"},
		{"beyond loopback with no member authentication", Config{HTTPAddr: "0.0.0.0:8080", AdvertiseHTTP: "127.0.0.1:8080"}, "-cluster-key"},
		{"raft beyond loopback with no member authentication", Config{RaftAddr: "0.0.0.0:7000", AdvertiseRaft: "127.0.0.1:7000"}, "-insecure-cluster"},
		{"peer TLS without its CA", Config{PeerTLSCert: "c.pem", PeerTLSKey: "k.pem"}, "-peer-tls-ca"},
		{"short cluster key", Config{ClusterKey: "short"}, "-cluster-key"},
		{"a short key in a rotation", Config{ClusterKey: "a-long-enough-cluster-key,short"}, "key 2"},
		{"client TLS without a key", Config{TLSCert: "c.pem"}, "-tls-key"},
		{"unknown relay policy", Config{RelayPolicy: "anything"}, "-relay-policy"},
		{"negative body timeout", Config{HTTPBodyTimeout: -1}, "-http-body-timeout"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateFillsDefaultsAndNormalisesJoin(t *testing.T) {
	cfg := Config{Join: []string{"127.0.0.1:8080", " http://127.0.0.2:8080/ "}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "node1" || cfg.DataDir != "./data" || cfg.HTTPAddr != DefaultHTTPAddr || cfg.RaftAddr != DefaultRaftAddr {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	want := []string{"http://127.0.0.1:8080", "http://127.0.0.2:8080"}
	for i := range want {
		if cfg.Join[i] != want[i] {
			t.Fatalf("join[%d] = %q, want %q", i, cfg.Join[i], want[i])
		}
	}
}

// A node beyond loopback starts with member authentication, or with
// -insecure-cluster; the relay policy defaults to roles once client
// tokens are configured.
func TestValidateAcceptsAuthenticatedClustersAndPicksTheRelayPolicy(t *testing.T) {
	for _, cfg := range []Config{
		{HTTPAddr: "0.0.0.0:8080", AdvertiseHTTP: "127.0.0.1:8080", ClusterKey: "a-long-enough-cluster-key"},
		{HTTPAddr: "0.0.0.0:8080", AdvertiseHTTP: "127.0.0.1:8080", PeerTLSCert: "c", PeerTLSKey: "k", PeerTLSCA: "ca"},
		{HTTPAddr: "0.0.0.0:8080", AdvertiseHTTP: "127.0.0.1:8080", InsecureCluster: true},
	} {
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%+v: %v, want accepted", cfg, err)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, RelayOpen},
		{Config{AccessKey: "a-long-enough-access-key"}, RelayRoles},
		{Config{JWKSFile: "keys.json"}, RelayRoles},
		{Config{AccessKey: "a-long-enough-access-key", RelayPolicy: RelayOpen}, RelayOpen},
	} {
		if err := tc.cfg.Validate(); err != nil || tc.cfg.RelayPolicy != tc.want {
			t.Fatalf("relay policy: got %q (%v), want %q", tc.cfg.RelayPolicy, err, tc.want)
		}
	}
}

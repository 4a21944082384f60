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
		{"join without port", Config{Join: []string{"somehost"}}, "-join"},
		{"short access key", Config{AccessKey: "short"}, "-access-key"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateFillsDefaultsAndNormalisesJoin(t *testing.T) {
	cfg := Config{Join: []string{"127.0.0.1:8080", " http://10.0.0.2:8080/ "}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "node1" || cfg.DataDir != "./data" || cfg.HTTPAddr != DefaultHTTPAddr || cfg.RaftAddr != DefaultRaftAddr {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	want := []string{"http://127.0.0.1:8080", "http://10.0.0.2:8080"}
	for i := range want {
		if cfg.Join[i] != want[i] {
			t.Fatalf("join[%d] = %q, want %q", i, cfg.Join[i], want[i])
		}
	}
}

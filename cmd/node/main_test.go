package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlagsReadTheEnvironmentAndTheCommandLineWins(t *testing.T) {
	t.Setenv("BACKPLANE_ID", "from-env")
	t.Setenv("BACKPLANE_RETAIN_AGE", "2h")
	t.Setenv("BACKPLANE_HTTP", "127.0.0.1:9999")
	t.Setenv("BACKPLANE_ALLOWED_ORIGINS", "https://a.example, https://b.example")
	cfg, _, _, err := parseFlags([]string{"-http", "127.0.0.1:8181", "-join", "127.0.0.1:1,http://127.0.0.1:2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "from-env" || cfg.Retention.MaxAge != 2*time.Hour {
		t.Fatalf("environment not applied: id %q retain-age %s", cfg.ID, cfg.Retention.MaxAge)
	}
	if cfg.HTTPAddr != "127.0.0.1:8181" {
		t.Fatalf("-http %q: the command line must win over BACKPLANE_HTTP", cfg.HTTPAddr)
	}
	if len(cfg.Join) != 2 || len(cfg.AllowedOrigins) != 2 || cfg.AllowedOrigins[1] != "https://b.example" {
		t.Fatalf("lists: join %q origins %q", cfg.Join, cfg.AllowedOrigins)
	}
}

func TestBadFlagsFailWithAMessage(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-log-level", "loud"}, want: "-log-level"},
		{args: []string{"-log-format", "xml"}, want: "-log-format"},
		{args: []string{"stray"}, want: "unexpected arguments"},
		{env: map[string]string{"BACKPLANE_RETAIN_AGE": "soon"}, want: "BACKPLANE_RETAIN_AGE"},
	}
	for _, tc := range cases {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		_, _, _, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one mentioning %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestRunRefusesAnInvalidConfiguration(t *testing.T) {
	err := run([]string{"-http", "127.0.0.1:7100", "-raft", "127.0.0.1:7100", "-data", t.TempDir()}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "different ports") {
		t.Fatalf("got %v, want an error that says to give -http and -raft different ports", err)
	}
}

package main

import (
	"io"
	"testing"
	"time"

	"github.com/backplane/backplane/upstream"
)

func TestUpstreamFlagsAndEnvironment(t *testing.T) {
	t.Setenv("BACKPLANE_UPSTREAM_KEY", "primary\nsecondary")
	t.Setenv("BACKPLANE_UPSTREAM_TIMEOUT", "7s")
	cfg, _, _, err := parseFlags([]string{
		"-upstream", "hub=chat;event=Add,Sub;http://127.0.0.1:9/{hub}/{event}",
		"-upstream", "http://127.0.0.1:9/runtime/webhooks/signalr?code=x",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := cfg.Application.(*upstream.Upstream)
	if !ok {
		t.Fatalf("Application %T, want *upstream.Upstream", cfg.Application)
	}
	u.Close()
	c, ok, err := upstream.FromFlags([]string{"http://127.0.0.1:9/x"}, []string{"primary", "secondary"}, 7*time.Second, false)
	if err != nil || !ok || len(c.Keys) != 2 || c.Timeout != 7*time.Second {
		t.Fatalf("FromFlags %+v %v %v", c, ok, err)
	}
	for _, bad := range [][]string{{"-upstream", "not a url"}, {"-upstream-key", "k"}, {"-upstream", "http://127.0.0.1:9/", "-upstream-timeout", "0s"}} {
		if _, _, _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	t.Setenv("BACKPLANE_UPSTREAM", "not a url")
	if _, _, _, err := parseFlags(nil, io.Discard); err == nil {
		t.Error("BACKPLANE_UPSTREAM is not read")
	}
}

package signalr2

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// TestTokensAreSignedAndBound: a token verifies with any of the keys (a
// rotation), not with another secret, not after any change, and a groups
// token only for its own connection; the two kinds never pass for each
// other.
func TestTokensAreSignedAndBound(t *testing.T) {
	oldKey, newKey := []byte("old-secret-0123456789"), []byte("new-secret-0123456789")
	signOld := newSigner([][]byte{oldKey}, purposeConnection)
	rotated := newSigner([][]byte{newKey, oldKey}, purposeConnection)
	other := newSigner([][]byte{[]byte("another-cluster-secret")}, purposeConnection)

	tok := signOld.connectionToken(connToken{ConnID: "c1", User: "alice"})
	if got, err := rotated.openConnectionToken(tok); err != nil || got != (connToken{ConnID: "c1", User: "alice"}) {
		t.Fatalf("rotated keys open %q = %+v, %v", tok, got, err)
	}
	if _, err := other.openConnectionToken(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("another secret opened the token: %v", err)
	}
	for i := range len(tok) {
		b := []byte(tok)
		b[i] ^= 0x20
		if got, err := rotated.openConnectionToken(string(b)); err == nil && got != (connToken{ConnID: "c1", User: "alice"}) {
			t.Fatalf("a token changed at byte %d opened as %+v", i, got)
		}
	}
	groups := newSigner([][]byte{oldKey}, purposeGroups)
	g := groups.groupsToken("c1", map[string][]string{"chat": {"a", "b"}})
	if got, err := groups.openGroupsToken(g, "c1"); err != nil || strings.Join(got["chat"], ",") != "a,b" {
		t.Fatalf("open groups token = %v, %v", got, err)
	}
	if _, err := groups.openGroupsToken(g, "c2"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("another connection's groups token opened: %v", err)
	}
	if _, err := signOld.openConnectionToken(g); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a groups token passed for a connection token: %v", err)
	}
}

// TestEnvelope: the persistent response as the 2.x clients read it.
func TestEnvelope(t *testing.T) {
	e := envelope{Cursor: 42, Init: true, Reconnect: true, Groups: "tok", Error: "", Messages: []fsm.Message{
		{Hub: "chathub", Target: "addMessage", Arguments: []byte(`["a",{"b":1}]`)},
		{Hub: "chathub", Target: "ping"},
	}}
	got := string(e.append(nil))
	want := `{"C":"42","S":1,"T":1,"G":"tok","M":[{"H":"chathub","M":"addMessage","A":["a",{"b":1}]},{"H":"chathub","M":"ping","A":[]}]}`
	if got != want {
		t.Fatalf("envelope\n got %s\nwant %s", got, want)
	}
	if got := string((&envelope{Cursor: 7, Error: `stop "now"`}).append(nil)); got != `{"C":"7","E":"stop \"now\"","M":[]}` {
		t.Fatalf("error envelope %s", got)
	}
	if got := string((&hubResponse{ID: "3", Result: json.RawMessage("17")}).marshal()); got != `{"I":"3","R":17}` {
		t.Fatalf("hub response %s", got)
	}
	if got := string((&hubResponse{ID: "3", Error: "no", HubError: true}).marshal()); got != `{"I":"3","E":"no","H":true}` {
		t.Fatalf("hub error %s", got)
	}
}

// The parsers of what comes from the network never panic, and what they
// accept is well formed.

func FuzzParseInvocation(f *testing.F) {
	for _, s := range []string{`{"H":"chat","M":"SendToAll","A":["m",1],"I":0}`, `{"H":"x","M":"y","A":[],"I":"abc","S":{"k":1}}`,
		`{"I":null}`, `[]`, `{"I":1e400}`, `{"H":"","M":"","A":null,"I":-1}`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inv, id, err := parseInvocation([]byte(s))
		if err == nil && (inv == nil || inv.Hub == "" || inv.Method == "" || id == "" || len(id) > 64) {
			t.Fatalf("accepted %q as %+v %q", s, inv, id)
		}
	})
}

func FuzzParseConnectionData(f *testing.F) {
	for _, s := range []string{`[{"name":"chathub"}]`, `[{"Name":"ChatHub"},{"NAME":"b"}]`, `%5B%7B%22name%22%3A%22x%22%7D%5D`, `[{"name":1}]`, `{}`, ``, `[null]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hubs, err := parseConnectionData(s)
		if err != nil {
			return
		}
		for _, h := range hubs {
			if fsm.ValidateHub(h) != nil || h != strings.ToLower(h) {
				t.Fatalf("accepted hub %q from %q", h, s)
			}
		}
	})
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "18446744073709551615", "18446744073709551616", "-1", "1e3", "d-1,2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseCursor(s)
		if err == nil && formatCursor(v) != strings.TrimLeft(s, "0") && !(v == 0 && strings.Trim(s, "0") == "") {
			t.Fatalf("parseCursor(%q) = %d", s, v)
		}
	})
}

func FuzzOpenTokens(f *testing.F) {
	sg := newSigner([][]byte{testSecret}, purposeGroups)
	sc := newSigner([][]byte{testSecret}, purposeConnection)
	f.Add(sg.groupsToken("c", map[string][]string{"h": {"g"}}))
	f.Add(sc.connectionToken(connToken{ConnID: "c"}))
	f.Add("a.b")
	f.Add("....")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = sg.openGroupsToken(s, "c")
		_, _ = sc.openConnectionToken(s)
	})
}

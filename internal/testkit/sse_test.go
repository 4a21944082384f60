package testkit_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/backplane/backplane/internal/testkit"
)

func TestSSEReader(t *testing.T) {
	r := testkit.NewSSEReader(strings.NewReader("\n: ping\n\nid: 7\r\nevent: message\ndata: a\ndata:b\nretry: 100\n\n: tail"))
	for i, want := range []testkit.Event{
		{Comments: []string{"ping"}},
		{ID: "7", Event: "message", Data: "a\nb", Retry: "100"},
	} {
		got, err := r.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: got %+v, %v, want %+v, nil", i, got, err, want)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: got error %v, want io.EOF", err)
	}
}

func TestReadSSE(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": hello\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n")
	}))
	defer srv.Close()
	read := func(path string, upTo string) []string {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		testkit.ReadSSE(srv.Client(), req, func(ev testkit.Event) bool {
			ids = append(ids, ev.ID)
			return ev.ID != upTo
		})
		return ids
	}
	if got := read("/", "none"); !reflect.DeepEqual(got, []string{"", "1", "2", "3"}) {
		t.Fatalf("the whole stream: got ids %q, want the comment block, 1, 2 and 3", got)
	}
	if got := read("/", "2"); !reflect.DeepEqual(got, []string{"", "1", "2"}) {
		t.Fatalf("stopped at 2: got ids %q, want the comment block, 1 and 2", got)
	}
	if got := read("/busy", "none"); len(got) != 0 {
		t.Fatalf("a 503: got ids %q, want no event", got)
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	testkit.WaitFor(t, 0, "the third check", func() (bool, string) { n++; return n == 1, "first" })
	if n != 1 {
		t.Fatalf("WaitFor on a condition that holds: got %d checks, want 1", n)
	}
	n = 0
	testkit.WaitUntil(t, testkit.PollInterval*50, "the third check", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("WaitUntil: got %d checks, want 3", n)
	}
}

func TestBuffer(t *testing.T) {
	var b testkit.Buffer
	_, _ = b.Write([]byte("ab"))
	off := b.Len()
	_, _ = b.Write([]byte("cd"))
	if b.String() != "abcd" || b.Since(off) != "cd" {
		t.Fatalf("got %q, since %d %q, want \"abcd\", \"cd\"", b.String(), off, b.Since(off))
	}
}

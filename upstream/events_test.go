package upstream

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestConnectionEventsAreAsynchronousAndRetried(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		n := calls.Add(1)
		if n == 1 {
			<-release // the first attempt hangs until the caller has returned
		}
		if n <= 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/{event}"}}, EventBackoff: time.Millisecond, Keys: []string{"k"}})
	c := testConn()
	done := make(chan struct{})
	go func() {
		u.Connected(c)
		u.Disconnected(c, "the client went away")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Connected/Disconnected blocked on the upstream")
	}
	close(release)
	reqs := f.waitRequests(t, 5)
	var paths []string
	for _, r := range reqs {
		paths = append(paths, r.path)
		if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Asrs-Category") != "connections" ||
			r.header.Get("X-Asrs-Signature") != "sha256="+hexHMAC("k", "conn-1") {
			t.Errorf("headers %v", r.header)
		}
	}
	want := "/connected /connected /connected /connected /disconnected"
	if strings.Join(paths, " ") != want {
		t.Fatalf("paths %q, want %q (connected retried until it succeeds, then disconnected, in order)", paths, want)
	}
	if string(reqs[0].body) != `{"type":10}` || string(reqs[4].body) != `{"type":11,"error":"the client went away"}` {
		t.Fatalf("bodies %q %q", reqs[0].body, reqs[4].body)
	}
}

func TestConnectionEventsGiveUpAfterTheirAttemptsAndOn4xx(t *testing.T) {
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Path == "/connected" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
	})
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL + "/{event}"}}, EventBackoff: time.Millisecond, EventAttempts: 3})
	c := testConn()
	u.Connected(c)
	u.Disconnected(c, "")
	reqs := f.waitRequests(t, 4)
	// Poll briefly for any extra attempt: there must be none.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := len(f.requests()); n != 4 {
			t.Fatalf("%d requests, want 3 attempts of connected and 1 of disconnected", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if string(reqs[3].body) != `{"type":11}` || reqs[3].path != "/disconnected" {
		t.Fatalf("last request %q %q", reqs[3].path, reqs[3].body)
	}
}

func TestConnectionEventQueueIsBounded(t *testing.T) {
	block := make(chan struct{})
	f := newFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) { <-block })
	u := newTestUpstream(t, Config{Rules: []Rule{{URL: f.srv.URL}}, EventQueue: eventWorkers})
	defer close(block)
	c := testConn()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			u.Connected(c) // one worker: one in flight, one queued, the rest dropped
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a full queue blocked Connected")
	}
	f.waitRequests(t, 1)
	if n := len(u.events.queues[0]) + len(u.events.queues[1]) + len(u.events.queues[2]) + len(u.events.queues[3]); n > 1 {
		t.Fatalf("%d events queued, the bound is 1 per worker", n)
	}
}

package netconn

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHijackStream: a handler takes a flushed response's connection and
// returns; the stream writes to it afterwards, its reader parks while the
// client is quiet (where readers park) and reports the hang-up once.
func TestHijackStream(t *testing.T) {
	var parked atomic.Int64
	hungUp := make(chan struct{}, 2)
	taken := make(chan *StreamConn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "identity") // close-delimited
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("first\n"))
		http.NewResponseController(w).Flush()
		c, err := HijackStream(w)
		if err != nil {
			t.Error(err)
			return
		}
		c.WatchHangUp(10*time.Millisecond, &parked, func() { hungUp <- struct{}{} })
		taken <- c
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("response: Transfer-Encoding %v, close %v; want close-delimited", resp.TransferEncoding, resp.Close)
	}
	body := bufio.NewReader(resp.Body)
	if l, err := body.ReadString('\n'); l != "first\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	c := <-taken // the handler has returned
	if _, err := c.Write([]byte("later\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := body.ReadString('\n'); l != "later\n" {
		t.Fatalf("line written after the handler returned: %q, %v", l, err)
	}
	if _, err := Shared(); err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for parked.Load() != 1 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if parked.Load() != 1 {
			t.Fatalf("the quiet client's reader did not park (%d parked)", parked.Load())
		}
	}
	conn.Close()
	select {
	case <-hungUp:
	case <-time.After(5 * time.Second):
		t.Fatal("the hang-up was not reported")
	}
	c.Close()
	select {
	case <-hungUp:
		t.Fatal("the hang-up was reported twice")
	case <-time.After(50 * time.Millisecond):
	}
	if n := parked.Load(); n != 0 {
		t.Fatalf("%d readers still counted as parked", n)
	}
}

// TestWriteSSEHeader: every SSE response gets the same headers; over
// HTTP/1.x it is close-delimited (no chunking) and detachable, over HTTP/2
// it is not.
func TestWriteSSEHeader(t *testing.T) {
	for _, tc := range []struct {
		major      int
		wantDetach bool
		wantTE     string
	}{{1, true, "identity"}, {2, false, ""}} {
		rec := httptest.NewRecorder()
		rec.Header().Set("Pragma", "no-cache")
		r := httptest.NewRequest(http.MethodGet, "/events", nil)
		r.ProtoMajor = tc.major
		if got := WriteSSEHeader(rec, r); got != tc.wantDetach {
			t.Errorf("HTTP/%d: detach = %v, want %v", tc.major, got, tc.wantDetach)
		}
		h := rec.Result().Header
		if rec.Code != http.StatusOK || h.Get("Content-Type") != "text/event-stream" ||
			h.Get("Cache-Control") != "no-cache, no-store" || h.Get("X-Accel-Buffering") != "no" ||
			h.Get("Transfer-Encoding") != tc.wantTE || h.Get("Pragma") != "no-cache" {
			t.Errorf("HTTP/%d: status %d, headers %v", tc.major, rec.Code, h)
		}
	}
}

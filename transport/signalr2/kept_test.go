package signalr2

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
)

// TestKeptHeaders: none without Authenticate, the named ones present
// (matched whatever their case; nil when none is), or all.
func TestKeptHeaders(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer x"}, "User-Agent": {"test"}, "Sec-Websocket-Key": {"k"}}
	auth := func(*http.Request, []string) (Identity, error) { return Identity{}, nil }
	for _, tt := range []struct {
		name string
		opts Options
		want http.Header
	}{
		{"no Authenticate", Options{AuthHeaders: []string{"Authorization"}}, nil},
		{"all", Options{Authenticate: auth}, h},
		{"named", Options{Authenticate: auth, AuthHeaders: []string{"authorization", "X-Api-Key"}}, http.Header{"Authorization": {"Bearer x"}}},
		{"none present", Options{Authenticate: auth, AuthHeaders: []string{"X-Api-Key"}}, nil},
	} {
		s := &Server{opts: tt.opts}
		if got := s.keptHeaders(h); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: kept %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestKeptRequest: a WebSocket keeps its upgrade request's path and query
// (without the connection token), addresses and the header it is given,
// and rebuilds a GET request of them for Authenticate.
func TestKeptRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/signalr/connect?transport=webSockets&connectionToken=abc%2Fdef&access_token=t1&room=a+b", nil)
	r.RemoteAddr = "127.0.0.1:5000"
	header := http.Header{"Authorization": {"Bearer x"}}
	c := &conn{kept: keepRequest(r, header)}
	want := url.Values{"transport": {"webSockets"}, "access_token": {"t1"}, "room": {"a b"}}
	if got := c.query(); !reflect.DeepEqual(got, want) {
		t.Errorf("query %v, want %v", got, want)
	}
	d := c.request()
	if got := d.URL.Query(); !reflect.DeepEqual(got, want) {
		t.Errorf("rebuilt request's query %v, want %v", got, want)
	}
	if d.URL.Path != "/signalr/connect" || d.RequestURI != d.URL.RequestURI() || d.Method != http.MethodGet || d.Proto != "HTTP/1.1" ||
		d.RemoteAddr != r.RemoteAddr || d.Host != r.Host || !reflect.DeepEqual(d.Header, header) {
		t.Errorf("rebuilt request %+v", d)
	}
	if (&conn{}).query() != nil || (&conn{}).request() != nil {
		t.Error("a conn with no request has a query or a request")
	}
}

package hubs

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync"
	"testing"

	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

type point struct{ X, Y int }

type testHub struct {
	mu        sync.Mutex
	connected []string
	gone      []string
}

func (h *testHub) Add(a, b int) int                     { return a + b }
func (h *testHub) Echo(ctx *Context, s string) string   { return ctx.ConnectionID() + ":" + s }
func (h *testHub) Sum(ctx context.Context, p point) int { return p.X + p.Y }
func (h *testHub) Fail() error                          { return NewHubError("no %s", "way") }
func (h *testHub) Secret() (int, error)                 { return 0, errors.New("database password wrong") }
func (h *testHub) Boom()                                { panic("bug") }
func (h *testHub) Nothing()                             {}
func (h *testHub) Count(n int) <-chan int {
	ch := make(chan int)
	go func() {
		defer close(ch)
		for i := 0; i < n; i++ {
			ch <- i
		}
	}()
	return ch
}
func (h *testHub) Letters(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, r := range s {
			if !yield(string(r)) {
				return
			}
		}
	}
}
func (h *testHub) Halt() iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		if yield(1, nil) {
			yield(0, NewHubError("halted"))
		}
	}
}
func (h *testHub) Total(in <-chan int) int {
	t := 0
	for v := range in {
		t += v
	}
	return t
}
func (h *testHub) OnConnected(c *Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.connected = append(h.connected, c.ConnectionID())
	return nil
}
func (h *testHub) OnDisconnected(c *Context, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	h.gone = append(h.gone, c.ConnectionID()+"/"+msg)
	return nil
}

func newTestServer(t *testing.T, detail bool) (*Server, *testHub) {
	t.Helper()
	s := newDetached(detail)
	h := &testHub{}
	if err := s.Register("Test", h); err != nil {
		t.Fatal(err)
	}
	return s, h
}

func jsonArgs(vals ...string) []hubproto.RawValue {
	out := make([]hubproto.RawValue, len(vals))
	for i, v := range vals {
		out[i] = hubproto.JSONValue([]byte(v))
	}
	return out
}

func invoke(s *Server, target string, args ...string) signalr.Completion {
	return s.Invoke(context.Background(), &signalr.Call{
		Conn:    signalr.ConnInfo{Hub: "test", ID: "c1"},
		Message: &hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: target, Arguments: jsonArgs(args...)},
	})
}

func TestInvokeResults(t *testing.T) {
	s, _ := newTestServer(t, false)
	cases := []struct {
		target string
		args   []string
		want   string
	}{
		{"add", []string{"2", "3"}, "5"},
		{"ADD", []string{"-2", "3"}, "1"},
		{"Echo", []string{`"hi"`}, `"c1:hi"`},
		{"sum", []string{`{"X":4,"Y":5}`}, "9"},
	}
	for _, c := range cases {
		got := invoke(s, c.target, c.args...)
		if got.Error != "" || !got.HasResult || string(got.Result.Data) != c.want {
			t.Errorf("%s%v = %+v (%s), want %s", c.target, c.args, got, got.Result.Data, c.want)
		}
	}
	if got := invoke(s, "nothing"); got.Error != "" || got.HasResult || got.Unknown {
		t.Errorf("void method completed %+v", got)
	}
	if got := invoke(s, "missing"); !got.Unknown {
		t.Errorf("unknown method completed %+v", got)
	}
}

func TestInvokeMsgpackArguments(t *testing.T) {
	s, _ := newTestServer(t, false)
	got := s.Invoke(context.Background(), &signalr.Call{
		Conn:    signalr.ConnInfo{Hub: "test", ID: "c1"},
		Message: &hubproto.Message{Type: hubproto.Invocation, Target: "Add", Arguments: []hubproto.RawValue{hubproto.MsgpackValue([]byte{0x07}), hubproto.MsgpackValue([]byte{0x08})}},
	})
	if string(got.Result.Data) != "15" {
		t.Fatalf("Add over MessagePack = %+v", got)
	}
}

func TestInvokeErrors(t *testing.T) {
	s, _ := newTestServer(t, false)
	cases := []struct {
		target string
		args   []string
		want   string
	}{
		{"add", []string{"1"}, "Invocation provides 1 argument(s) but target expects 2."},
		{"add", []string{`"x"`, "1"}, "Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked."},
		{"fail", nil, "An unexpected error occurred invoking 'Fail' on the server. HubException: no way"},
		{"secret", nil, "An unexpected error occurred invoking 'Secret' on the server."},
		{"boom", nil, "An unexpected error occurred invoking 'Boom' on the server."},
		{"count", []string{"2"}, "The client attempted to invoke the streaming 'Count' method with a non-streaming invocation."},
	}
	for _, c := range cases {
		if got := invoke(s, c.target, c.args...); got.Error != c.want {
			t.Errorf("%s%v error = %q, want %q", c.target, c.args, got.Error, c.want)
		}
	}
	d, _ := newTestServer(t, true)
	if got := invoke(d, "secret"); !strings.HasSuffix(got.Error, "database password wrong") {
		t.Errorf("detailed error = %q", got.Error)
	}
}

func TestServerStreams(t *testing.T) {
	s, _ := newTestServer(t, false)
	var items []string
	var c signalr.Completion
	run := func(target string, stopAfter int, args ...string) {
		items = nil
		call := &signalr.Call{
			Conn:    signalr.ConnInfo{Hub: "test", ID: "c1"},
			Message: &hubproto.Message{Type: hubproto.StreamInvocation, InvocationID: "1", Target: target, Arguments: jsonArgs(args...)},
		}
		call.SendItem = func(v hubproto.RawValue) error {
			if stopAfter > 0 && len(items) == stopAfter {
				return errors.New("client gone")
			}
			items = append(items, string(v.Data))
			return nil
		}
		c = s.Invoke(context.Background(), call)
	}
	run("count", 0, "3")
	if strings.Join(items, ",") != "0,1,2" || c.Error != "" {
		t.Errorf("count: %v %+v", items, c)
	}
	run("letters", 0, `"abc"`)
	if strings.Join(items, ",") != `"a","b","c"` || c.Error != "" {
		t.Errorf("letters: %v %+v", items, c)
	}
	run("letters", 2, `"abcdef"`)
	if len(items) != 2 {
		t.Errorf("a stream whose client left sent %v", items)
	}
	run("halt", 0)
	if strings.Join(items, ",") != "1" || c.Error != "An unexpected error occurred invoking 'Halt' on the server. HubException: halted" {
		t.Errorf("halt: %v %+v", items, c)
	}
	run("add", 0, "1", "2")
	if !strings.Contains(c.Error, "non-streaming 'Add'") {
		t.Errorf("stream invocation of Add: %+v", c)
	}
}

func TestStreamCancelled(t *testing.T) {
	s, _ := newTestServer(t, false)
	cancel := make(chan struct{})
	sent := 0
	call := &signalr.Call{
		Conn:      signalr.ConnInfo{Hub: "test", ID: "c1"},
		Message:   &hubproto.Message{Type: hubproto.StreamInvocation, Target: "count", Arguments: jsonArgs("1000000000")},
		Cancelled: cancel,
	}
	call.SendItem = func(hubproto.RawValue) error {
		sent++
		if sent == 5 {
			close(cancel)
		}
		return nil
	}
	done := make(chan signalr.Completion)
	go func() { done <- s.Invoke(context.Background(), call) }()
	c := <-done
	// Count(1e9) would run for minutes: returning at all proves the
	// cancellation stopped it.
	if c.Error != "" || sent < 5 {
		t.Fatalf("cancelled stream: sent %d, completion %+v", sent, c)
	}
}

func TestUploadStream(t *testing.T) {
	s, _ := newTestServer(t, false)
	items := make(chan hubproto.RawValue, 4)
	for _, v := range []string{"1", "2", "39"} {
		items <- hubproto.JSONValue([]byte(v))
	}
	close(items)
	call := &signalr.Call{
		Conn:    signalr.ConnInfo{Hub: "test", ID: "c1"},
		Message: &hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "total", StreamIDs: []string{"s1"}},
		Upload: func(id string) (<-chan hubproto.RawValue, func() error) {
			if id != "s1" {
				t.Errorf("upload asked for stream %q", id)
			}
			return items, func() error { return nil }
		},
	}
	if c := s.Invoke(context.Background(), call); string(c.Result.Data) != "42" {
		t.Fatalf("Total of an upload = %+v", c)
	}
	call.Message.StreamIDs = nil
	if c := s.Invoke(context.Background(), call); c.Error != "Client sent 0 stream(s), Hub method expects 1." {
		t.Fatalf("Total without a stream = %+v", c)
	}
}

// An upload the client ends with an error, or with an item that does not
// decode, fails the invocation (as an ASP.NET method reading a faulted
// ChannelReader throws), with the reason when errors are detailed.
func TestUploadStreamFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		items     []string
		streamErr error
		want      string
	}{
		{"client error", []string{"1"}, errors.New("the client gave up"), `the client ended upload stream "s1" with an error: the client gave up`},
		{"bad item", []string{"1", `"two"`}, nil, `an item of upload stream "s1" does not decode`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, true)
			items := make(chan hubproto.RawValue, len(tc.items))
			for _, v := range tc.items {
				items <- hubproto.JSONValue([]byte(v))
			}
			close(items)
			call := &signalr.Call{
				Conn:    signalr.ConnInfo{Hub: "test", ID: "c1"},
				Message: &hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "total", StreamIDs: []string{"s1"}},
				Upload: func(string) (<-chan hubproto.RawValue, func() error) {
					return items, func() error { return tc.streamErr }
				},
			}
			c := s.Invoke(context.Background(), call)
			if c.HasResult || !strings.HasPrefix(c.Error, "An unexpected error occurred invoking 'Total' on the server. ") || !strings.Contains(c.Error, tc.want) {
				t.Fatalf("Total of a failed upload = %+v, want an error naming %q", c, tc.want)
			}
		})
	}
}

func TestHooks(t *testing.T) {
	s, h := newTestServer(t, false)
	s.Connected(signalr.ConnInfo{Hub: "test", ID: "a"})
	s.Disconnected(signalr.ConnInfo{Hub: "test", ID: "a"}, "")
	s.Disconnected(signalr.ConnInfo{Hub: "test", ID: "b"}, "read failed")
	s.Connected(signalr.ConnInfo{Hub: "other", ID: "x"})
	if strings.Join(h.connected, ",") != "a" || strings.Join(h.gone, ",") != "a/,b/read failed" {
		t.Fatalf("hooks saw connected %v, disconnected %v", h.connected, h.gone)
	}
	if got := s.Methods("TEST"); len(got) != 11 {
		t.Errorf("Methods = %v", got)
	}
}

type badHub struct{}

func (badHub) Two() (int, int) { return 0, 0 }

func TestRegisterRejects(t *testing.T) {
	s := newDetached(false)
	if err := s.Register("bad", badHub{}); err == nil || !strings.Contains(err.Error(), "second result must be an error") {
		t.Fatalf("Register(badHub) = %v", err)
	}
	if err := s.Register("t", &testHub{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Register("T", &testHub{}); err == nil {
		t.Fatal("a second hub of the same name was registered")
	}
}

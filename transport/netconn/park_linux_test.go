//go:build linux

package netconn

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const waitTimeout = 5 * time.Second

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	return server, client
}

// mustWatch watches c in p.
func mustWatch(t *testing.T, p *Parker, c net.Conn) *Watch {
	t.Helper()
	w, err := p.Watch(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newParker(t *testing.T) *Parker {
	t.Helper()
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// resumed returns a resume function and the channel it signals.
func resumed() (func(), chan struct{}) {
	ch := make(chan struct{}, 8)
	return func() { ch <- struct{}{} }, ch
}

func waitResume(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: the parked reader did not resume", what)
	}
}

func TestParkedReaderResumesWhenBytesArrive(t *testing.T) {
	p := newParker(t)
	server, client := tcpPair(t)
	w := mustWatch(t, p, server)
	for round := range 3 { // the second and later rounds re-arm a registered descriptor
		resume, ch := resumed()
		if !w.Park(resume) {
			t.Fatalf("round %d: Park refused", round)
		}
		if w.Park(resume) {
			t.Fatalf("round %d: a second Park of an armed watch was accepted", round)
		}
		if n := p.Parked(); n != 1 {
			t.Fatalf("round %d: Parked = %d, want 1", round, n)
		}
		if _, err := client.Write([]byte{byte(round)}); err != nil {
			t.Fatal(err)
		}
		waitResume(t, ch, "bytes arrived")
		if n := p.Parked(); n != 0 {
			t.Fatalf("round %d: Parked = %d after the resume, want 0", round, n)
		}
		var b [1]byte
		if _, err := io.ReadFull(server, b[:]); err != nil || b[0] != byte(round) {
			t.Fatalf("round %d: read %v, %v", round, b, err)
		}
	}
}

func TestParkWithBytesWaitingResumesAtOnce(t *testing.T) {
	p := newParker(t)
	server, client := tcpPair(t)
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w := mustWatch(t, p, server)
	// Let the byte land, then park: readiness that came first is not lost.
	deadline := time.Now().Add(waitTimeout)
	resume, ch := resumed()
	if !w.Park(resume) {
		t.Fatal("Park refused")
	}
	for time.Now().Before(deadline) && p.Parked() != 0 {
		time.Sleep(time.Millisecond)
	}
	waitResume(t, ch, "a byte was waiting")
}

func TestParkedReaderResumesWhenThePeerHangsUp(t *testing.T) {
	p := newParker(t)
	server, client := tcpPair(t)
	w := mustWatch(t, p, server)
	resume, ch := resumed()
	if !w.Park(resume) {
		t.Fatal("Park refused")
	}
	_ = client.Close()
	waitResume(t, ch, "peer closed")
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the hang-up: %v, want EOF", err)
	}
}

func TestClosingAWatchedConnResumesItsReaderOnce(t *testing.T) {
	p := newParker(t)
	server, _ := tcpPair(t)
	w := mustWatch(t, p, server)
	wc := &WatchedConn{Conn: server, Watch: w}
	var runs atomic.Int32
	done := make(chan struct{})
	if !w.Park(func() {
		if runs.Add(1) == 1 {
			close(done)
		}
	}) {
		t.Fatal("Park refused")
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("closing the connection did not resume its reader")
	}
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	if w.Park(func() {}) {
		t.Fatal("Park of a cancelled watch was accepted")
	}
	_ = wc.Close() // twice is harmless
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked = %d, want 0", n)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("resume ran %d times, want 1", n)
	}
}

// An event and a Cancel racing for the same arming resume the reader once.
func TestEventAndCancelRacingResumeOnce(t *testing.T) {
	p := newParker(t)
	const rounds = 200
	var runs atomic.Int32
	for range rounds {
		server, client := tcpPair(t)
		w := mustWatch(t, p, server)
		if !w.Park(func() { runs.Add(1) }) {
			t.Fatal("Park refused")
		}
		go func() { _, _ = client.Write([]byte("x")) }()
		wc := &WatchedConn{Conn: server, Watch: w}
		_ = wc.Close()
	}
	deadline := time.Now().Add(waitTimeout)
	for runs.Load() < rounds && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runs.Load(); n != rounds {
		t.Fatalf("resumes = %d over %d parkings, want one each", n, rounds)
	}
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked = %d, want 0", n)
	}
}

func TestCloseResumesEveryParkedReader(t *testing.T) {
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	resume, ch := resumed()
	var watches []*Watch
	for range 3 {
		server, _ := tcpPair(t)
		w := mustWatch(t, p, server)
		if !w.Park(resume) {
			t.Fatal("Park refused")
		}
		watches = append(watches, w)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range watches {
		waitResume(t, ch, "parker closed "+string(rune('0'+i)))
	}
	if watches[0].Park(resume) {
		t.Fatal("Park on a closed Parker was accepted")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWatchNeedsAFileDescriptor(t *testing.T) {
	p := newParker(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := p.Watch(a); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Watch(net.Pipe) = %v, want ErrUnsupported", err)
	}
}

func TestLimitSendBufferReachesUnderWrappers(t *testing.T) {
	p := newParker(t)
	server, _ := tcpPair(t)
	w := mustWatch(t, p, server)
	wrapped := &WatchedConn{Conn: server, Watch: w}
	if err := LimitSendBuffer(wrapped, SendBuffer); err != nil {
		t.Fatal(err)
	}
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	_ = raw.Control(func(fd uintptr) { got, gerr = sendBufferOf(int(fd)) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	// Linux doubles the value set (for its bookkeeping); a fresh socket
	// starts at tcp_wmem's default, 16 KiB.
	if got < SendBuffer || got > 2*SendBuffer {
		t.Fatalf("send buffer = %d, want %d to %d", got, SendBuffer, 2*SendBuffer)
	}
}

func sendBufferOf(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
}

package peer

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/internal/testkit"
)

// accepted is what the server side of a stream layer got from one
// connection: its first line, or the error of reading it.
type accepted struct {
	line string
	err  error
}

// serveEcho accepts on sl until the test ends, reports each connection's
// first line and echoes it back, as a stand-in for Raft's handleConn.
func serveEcho(t *testing.T, sl raft.StreamLayer) <-chan accepted {
	t.Helper()
	got := make(chan accepted, 16)
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				got <- accepted{line: line, err: err}
				if err == nil {
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = sl.Close() })
	return got
}

// next waits for the server's report of the next connection.
func next(t *testing.T, got <-chan accepted) accepted {
	t.Helper()
	select {
	case a := <-got:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the server reported no connection")
		return accepted{}
	}
}

// echo sends a line on c and returns what comes back.
func echo(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line)); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// wantAdmitted dials addr through sl and wants a line echoed back by the
// server, whose reader got it; who names the client in failures.
func wantAdmitted(t *testing.T, who string, sl raft.StreamLayer, addr raft.ServerAddress, got <-chan accepted) {
	t.Helper()
	c, err := sl.Dial(addr, 2*time.Second)
	if err != nil {
		t.Fatalf("%s: dial: %v", who, err)
	}
	if back, err := echo(c, "hello\n"); err != nil || back != "hello\n" {
		t.Fatalf("%s: echo: %q, %v", who, back, err)
	}
	_ = c.Close()
	if a := next(t, got); a.err != nil || a.line != "hello\n" {
		t.Fatalf("%s: server got %q, %v, want \"hello\\n\"", who, a.line, a.err)
	}
}

func wantRefused(t *testing.T, who string, a accepted) {
	t.Helper()
	if !errors.Is(a.err, ErrUnauthenticated) || a.line != "" {
		t.Fatalf("%s: server read %q, err %v; want nothing and ErrUnauthenticated", who, a.line, a.err)
	}
}

func TestRaftTLSAcceptsMembersOnly(t *testing.T) {
	p := newPKI(t)
	ln := listen(t)
	got := serveEcho(t, p.tlsAuth(t, "m1", p.member1).RaftStreamLayer(ln, nil))
	addr := raft.ServerAddress(ln.Addr().String())

	wantAdmitted(t, "a member", p.tlsAuth(t, "m2", p.member2).RaftStreamLayer(listen(t), nil), addr, got)

	// Another cluster's member refuses our server and is refused by it.
	if c, err := p.strangerAuth(t).RaftStreamLayer(listen(t), nil).Dial(addr, 2*time.Second); err == nil {
		_ = c.Close()
		t.Fatal("a member of another CA connected")
	}
	wantRefused(t, "other cluster's member", next(t, got))

	// A client that trusts any server: with a certificate of another CA,
	// and with none, its bytes never reach the server's reader.
	stranger, err := tls.LoadX509KeyPair(p.stranger.cert, p.stranger.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{"other CA": &stranger, "no certificate": {}} {
		c, err := tls.Dial("tcp", string(addr), sendAnyCert(cert))
		if err == nil {
			if back, err := echo(c, "hello\n"); err == nil {
				t.Fatalf("%s: echo %q succeeded", name, back)
			}
			_ = c.Close()
		}
		wantRefused(t, name, next(t, got))
	}
}

func TestRaftKeyHandshake(t *testing.T) {
	logs := &logBuffer{}
	srv := mustNew(t, Config{NodeID: "a", ClusterKey: "correct horse battery staple", Logger: logs.logger()})
	ln := listen(t)
	advertise := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	sl := srv.RaftStreamLayer(ln, advertise)
	if sl.Addr() != advertise {
		t.Fatalf("Addr %v, want the advertised %v", sl.Addr(), advertise)
	}
	got := serveEcho(t, sl)
	addr := raft.ServerAddress(ln.Addr().String())

	// An idle connection that never speaks must not hold up Accept: the
	// handshake runs on the accepted connection's first read.
	idle, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	good := mustNew(t, Config{NodeID: "b", ClusterKey: "correct horse battery staple"})
	wantAdmitted(t, "the right key, an idle connection open", good.RaftStreamLayer(listen(t), nil), addr, got)

	wrong := mustNew(t, Config{NodeID: "w", ClusterKey: "wrong horse battery staple"})
	if c, err := wrong.RaftStreamLayer(listen(t), nil).Dial(addr, 2*time.Second); err == nil {
		_ = c.Close()
		t.Fatal("dial with a wrong key succeeded")
	}
	wantRefused(t, "wrong key", next(t, got))

	// Raw Raft bytes with no handshake: the server closes the connection
	// and its reader never sees them.
	raw, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rpc := append([]byte{0}, make([]byte, 120)...) // an AppendEntries type byte and a body
	rpc = append(rpc, '\n')
	if _, err := raw.Write(rpc); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "raw raft bytes", next(t, got))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello, _ := io.ReadAll(raw) // the challenge, then the close (EOF or reset)
	if len(hello) != len(raftMagic)+raftNonceLen || string(hello[:len(raftMagic)]) != raftMagic {
		t.Fatalf("raw client read %d bytes %q, want only the %d-byte challenge", len(hello), hello, len(raftMagic)+raftNonceLen)
	}
	testkit.WaitUntil(t, 5*time.Second, "a warning naming the refused peer", func() bool {
		return contains(logs.String(), "level=WARN", raw.LocalAddr().String())
	})
}

func TestRaftModeNoneIsPlainTCP(t *testing.T) {
	a := mustNew(t, Config{NodeID: "a"})
	if a.Mode() != ModeNone {
		t.Fatalf("mode %v, want none", a.Mode())
	}
	ln := listen(t)
	got := serveEcho(t, a.RaftStreamLayer(ln, nil))
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if back, err := echo(raw, "plain\n"); err != nil || back != "plain\n" {
		t.Fatalf("plain echo: %q, %v", back, err)
	}
	if a := next(t, got); a.err != nil || a.line != "plain\n" {
		t.Fatalf("server got %q, %v", a.line, a.err)
	}
}

// TestClusterKeyRotation: each step of a rolling key change (old → old,new
// → new,old → new) interoperates with the step before it, on Raft and on
// HTTP, both ways; the two ends do not.
func TestClusterKeyRotation(t *testing.T) {
	const oldKey, newKey = "old horse battery staple", "new horse battery staple"
	works := func(server, client string) bool {
		srv := mustNew(t, Config{NodeID: "s", ClusterKey: server})
		cli := mustNew(t, Config{NodeID: "c", ClusterKey: client})
		ln := listen(t)
		got := serveEcho(t, srv.RaftStreamLayer(ln, nil))
		c, err := cli.RaftStreamLayer(listen(t), nil).Dial(raft.ServerAddress(ln.Addr().String()), 2*time.Second)
		raftOK := err == nil
		if raftOK {
			back, err := echo(c, "hi\n")
			raftOK = err == nil && back == "hi\n"
			_ = c.Close()
		}
		if a := next(t, got); (a.err == nil) != raftOK {
			t.Fatalf("%q serving %q: the two sides disagree (client ok=%v, server err %v)", server, client, raftOK, a.err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "/internal", nil)
		req.RequestURI = "/internal"
		cli.Sign(req, nil)
		httpOK := srv.Verify(req) == nil
		if raftOK != httpOK {
			t.Fatalf("%q serving %q: raft ok=%v, http ok=%v", server, client, raftOK, httpOK)
		}
		return raftOK
	}
	steps := []string{oldKey, oldKey + "," + newKey, newKey + ", " + oldKey, newKey}
	for i := 1; i < len(steps); i++ {
		if !works(steps[i-1], steps[i]) || !works(steps[i], steps[i-1]) {
			t.Errorf("steps %q and %q do not interoperate", steps[i-1], steps[i])
		}
	}
	if works(oldKey, newKey) || works(newKey, oldKey) {
		t.Error("the old key alone and the new key alone interoperate")
	}
	if _, err := New(Config{ClusterKey: oldKey + ",,"}); err == nil || !strings.Contains(err.Error(), "-cluster-key") {
		t.Errorf("an empty key in the list: %v, want an error naming -cluster-key", err)
	}
}

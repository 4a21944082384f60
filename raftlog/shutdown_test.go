package raftlog

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// blackHole is a Raft address that accepts connections and never answers,
// as a hung process or a black-holed network does. It closes what it
// accepted when the test ends.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// A leader stops within its shutdown timeout while a follower accepts its
// connections but never answers: raft's replication to it waits in an RPC
// until the 10 s I/O timeout, then dials again for a last replication, so
// before Shutdown ended the connections this took 19.6 s.
func TestLeaderStopsWhileAFollowerHangs(t *testing.T) {
	a := open(t, "a", t.TempDir(), true)
	waitLeader(t, a)
	b := open(t, "b", t.TempDir(), false)
	defer b.Shutdown()
	if _, err := a.Join("b", b.LocalAddr()); err != nil {
		t.Fatalf("join b: %v", err)
	}
	if _, err := a.Join("hung", blackHole(t)); err != nil {
		t.Fatalf("join the hung member: %v", err)
	}
	for i := range 50 {
		if _, _, err := a.Apply(t.Context(), fmt.Appendf(nil, "entry-%d", i)); err != nil {
			t.Fatalf("apply %d (a and b are a majority): %v", i, err)
		}
	}
	// The replication to the hung member is now inside an RPC that will
	// not be answered.
	const limit = 3 * time.Second
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Shutdown() }()
	select {
	case err := <-done:
		took := time.Since(start)
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		t.Logf("the leader stopped in %s while a follower hung", took.Round(time.Microsecond))
	case <-time.After(limit):
		t.Fatalf("the leader did not stop within %s while a follower hung", limit)
	}
	// Stopped means stopped: no Raft connection is left open.
	a.streams.mu.Lock()
	n := len(a.streams.conns)
	a.streams.mu.Unlock()
	if n != 0 {
		t.Errorf("%d Raft connections still open after Shutdown", n)
	}
}

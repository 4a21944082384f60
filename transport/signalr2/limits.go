package signalr2

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/backplane/backplane/transport/access"
)

// Per-connection invocation state on this node: the token bucket that
// bounds a connection's hub invocations (Options.InvocationRate per
// second, Options.InvocationBurst at once, as the ASP.NET Core clients'
// are bounded) and its turn to call the Application, so that its
// invocations reach it one at a time, in the order they arrived.

// callState is one connection's invocation state on this node.
type callState struct {
	mu       sync.Mutex
	bucket   access.RateBucket // the invocation rate
	lastUsed time.Time
	busy     int // invocations holding or waiting for the turn

	// turn is held by the invocation that calls the Application; Go
	// serves the goroutines blocked on a channel in arrival order.
	turn chan struct{}
}

// callStates keeps the callState of the connections invoking here.
type callStates struct {
	mu    sync.Mutex
	conns map[string]*callState
}

// get returns the connection's state, made on first use, marked busy
// until done is called.
func (cs *callStates) get(id string) (st *callState, done func()) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.conns == nil {
		cs.conns = map[string]*callState{}
	}
	st = cs.conns[id]
	if st == nil {
		st = &callState{turn: make(chan struct{}, 1)}
		cs.conns[id] = st
	}
	st.busy++
	st.lastUsed = time.Now()
	return st, func() {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		st.busy--
		st.lastUsed = time.Now()
	}
}

// drop forgets a connection that ended.
func (cs *callStates) drop(id string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if st := cs.conns[id]; st != nil && st.busy == 0 {
		delete(cs.conns, id)
	}
}

// prune forgets the connections idle for longer than idle.
func (cs *callStates) prune(now time.Time, idle time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for id, st := range cs.conns {
		if st.busy == 0 && now.Sub(st.lastUsed) > idle {
			delete(cs.conns, id)
		}
	}
}

// allow takes a token from the bucket, or reports the connection is over
// the rate. rate <= 0: no limit; burst < 1: the rate's worth.
func (st *callState) allow(now time.Time, rate float64, burstN int) bool {
	if rate <= 0 {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.bucket.Allow(now, rate, burstN)
}

// wait takes the connection's turn to call the Application; release gives
// it back.
func (st *callState) wait(ctx context.Context) (release func(), err error) {
	select {
	case st.turn <- struct{}{}:
		return func() { <-st.turn }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the connection's earlier invocations: %w", context.Cause(ctx))
	}
}

// overRate is the error text of an invocation over the connection's rate
// ("" when it may run).
func (s *Server) overRate(st *callState, method string) string {
	if st.allow(time.Now(), s.opts.InvocationRate, s.opts.InvocationBurst) {
		return ""
	}
	return fmt.Sprintf("Failed to invoke '%s': rate limit exceeded (%g invocations/s per connection)", method, s.opts.InvocationRate)
}

package netconn

import (
	"context"
	"sync"
	"time"
)

// Life ends a connection that waits without a goroutine (see Pump) and
// sends its keep-alives: it calls end when a context ends (with its
// cause), when a deadline passes (a token's expiry), or when a keep-alive
// fails. No context of the connection's own: a callback on the given one,
// a timer and the keep-alive's timer, armed together by Start and stopped
// together by Stop.
type Life struct {
	mu        sync.Mutex // held while Start arms: end may be called before it returns
	stopCtx   func() bool
	expiry    *time.Timer
	keepAlive *KeepAlive
}

// Start arms the life. end is called, on a goroutine of its own, with
// ctx's cause when ctx ends, with expired at expires (zero: never), and
// with failed when sending a keep-alive fails; keepAlive is sent after
// each period without a write (see KeepAlive and Wrote).
func (l *Life) Start(ctx context.Context, expires time.Time, expired error, period time.Duration, keepAlive func() error, failed error, end func(error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keepAlive = StartKeepAlive(period, keepAlive, func() { end(failed) })
	l.stopCtx = context.AfterFunc(ctx, func() { end(context.Cause(ctx)) })
	if !expires.IsZero() {
		l.expiry = time.AfterFunc(time.Until(expires), func() { end(expired) })
	}
}

// Wrote notes a write to the connection: the next keep-alive is due a
// period after it. Call it once Start has returned.
func (l *Life) Wrote() { l.keepAlive.Wrote() }

// Stop disarms the life: no keep-alive and no end follow.
func (l *Life) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keepAlive.Stop()
	l.stopCtx()
	if l.expiry != nil {
		l.expiry.Stop()
	}
}

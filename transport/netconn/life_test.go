package netconn

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLife: the context's end, the deadline and a failed keep-alive each
// call end with their cause; keep-alives are sent after quiet; after Stop
// nothing is called.
func TestLife(t *testing.T) {
	errExpired, errFailed := errors.New("expired"), errors.New("keep-alive failed")
	wait := func(ends chan error, want error) {
		t.Helper()
		select {
		case got := <-ends:
			if !errors.Is(got, want) {
				t.Fatalf("ended with %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("not ended, want %v", want)
		}
	}
	start := func(ctx context.Context, expires time.Time, keepAlive func() error) (*Life, chan error) {
		ends := make(chan error, 4)
		l := &Life{}
		l.Start(ctx, expires, errExpired, 20*time.Millisecond, keepAlive, errFailed, func(err error) { ends <- err })
		return l, ends
	}
	nop := func() error { return nil }

	cause := errors.New("draining")
	ctx, cancel := context.WithCancelCause(context.Background())
	l, ends := start(ctx, time.Time{}, nop)
	cancel(cause)
	wait(ends, cause)
	l.Stop()

	l, ends = start(context.Background(), time.Now().Add(30*time.Millisecond), nop)
	wait(ends, errExpired)
	l.Stop()

	sent := make(chan struct{}, 8)
	l, ends = start(context.Background(), time.Time{}, func() error { sent <- struct{}{}; return errors.New("broken") })
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("no keep-alive after quiet")
	}
	wait(ends, errFailed)
	l.Stop()

	ctx, cancel = context.WithCancelCause(context.Background())
	l, ends = start(ctx, time.Now().Add(20*time.Millisecond), nop)
	l.Stop()
	cancel(cause)
	select {
	case err := <-ends:
		t.Fatalf("ended with %v after Stop", err)
	case <-time.After(100 * time.Millisecond): // past the deadline and a keep-alive period
	}
}

package netconn

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// witness waits until a fresh keep-alive of the same period has sent n
// keep-alives: by then any keep-alive started before it that still runs
// has had its chance too.
func witness(t *testing.T, period time.Duration, n int32) {
	t.Helper()
	var sent atomic.Int32
	w := StartKeepAlive(period, func() error { sent.Add(1); return nil }, func() {})
	defer w.Stop()
	testkit.WaitFor(t, 5*time.Second, "the witness's keep-alives", func() (bool, string) {
		return sent.Load() >= n, fmt.Sprintf("%d sent", sent.Load())
	})
}

// A keep-alive goes out after a period of quiet, not while the connection
// is written to; a failed one calls fail and ends them; Stop ends them.
func TestKeepAlive(t *testing.T) {
	const period = 20 * time.Millisecond
	var sent, failed atomic.Int32
	k := StartKeepAlive(period, func() error { sent.Add(1); return nil }, func() { failed.Add(1) })
	testkit.WaitFor(t, 5*time.Second, "two keep-alives", func() (bool, string) {
		return sent.Load() >= 2, fmt.Sprintf("%d sent", sent.Load())
	})

	// Writes more often than the period hold the keep-alives back.
	before := sent.Load()
	tick := time.NewTicker(period / 4)
	for range 40 {
		k.Wrote()
		<-tick.C
	}
	tick.Stop()
	if got := sent.Load() - before; got > 1 { // one may have been on its way
		t.Fatalf("keep-alives while written to every %s: got %d, want at most 1", period/4, got)
	}

	k.Stop()
	stopped := sent.Load()
	witness(t, period, 3)
	if sent.Load() != stopped {
		t.Fatalf("keep-alives after Stop: got %d more, want none", sent.Load()-stopped)
	}

	var tries atomic.Int32
	StartKeepAlive(period, func() error { tries.Add(1); return errors.New("broken") }, func() { failed.Add(1) })
	testkit.WaitFor(t, 5*time.Second, "the failed keep-alive to call fail", func() (bool, string) {
		return failed.Load() == 1, fmt.Sprintf("%d fails", failed.Load())
	})
	witness(t, period, 3)
	if tries.Load() != 1 || failed.Load() != 1 {
		t.Fatalf("after a failed keep-alive: %d tries, %d fails, want 1 and 1", tries.Load(), failed.Load())
	}
}

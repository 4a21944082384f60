package testkit

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// PollInterval is how long WaitFor sleeps between two checks.
const PollInterval = 20 * time.Millisecond

// WaitFor polls cond every PollInterval until it reports true, and fails
// the test when timeout passes, with what it waited for and cond's last
// explanation. cond is checked once more at the deadline, so a slow check
// still gets a last chance.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, detail)
		}
		time.Sleep(PollInterval)
	}
}

// WaitUntil is WaitFor for a condition that has nothing to explain.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, timeout, what, func() (bool, string) { return cond(), "not yet" })
}

// WaitParked waits up to 5 s until parked reports n parked readers and the
// process runs fewer than 5 goroutines more than goroutinesBefore (its
// runtime.NumGoroutine before the connections opened, allowing a few for
// the test's HTTP server): n idle connections that hold no goroutine.
func WaitParked(t testing.TB, what string, parked func() int64, n int64, goroutinesBefore int) {
	t.Helper()
	WaitFor(t, 5*time.Second, what, func() (bool, string) {
		got, extra := parked(), runtime.NumGoroutine()-goroutinesBefore
		return got == n && extra < 5, fmt.Sprintf("%d of %d readers parked, %d goroutines more than before the connections opened", got, n, extra)
	})
}

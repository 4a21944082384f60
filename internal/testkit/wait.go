package testkit

import (
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

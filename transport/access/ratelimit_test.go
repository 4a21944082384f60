package access

import (
	"testing"
	"time"
)

// A full bucket lets a burst through, then one invocation per 1/rate; a
// burst below 1 is the rate's worth; a rate of 0 is no limit.
func TestRateBucket(t *testing.T) {
	start := time.Unix(1000, 0)
	var b RateBucket
	for i := range 3 {
		if !b.Allow(start, 2, 3) {
			t.Fatalf("invocation %d of a burst of 3: refused", i+1)
		}
	}
	if b.Allow(start, 2, 3) {
		t.Fatal("a 4th invocation at once with a burst of 3: allowed")
	}
	if b.Allow(start.Add(400*time.Millisecond), 2, 3) {
		t.Fatal("0.4 s later at 2/s (0.8 tokens): allowed")
	}
	if !b.Allow(start.Add(500*time.Millisecond), 2, 3) {
		t.Fatal("0.5 s later at 2/s (a whole token): refused")
	}
	if b.Allow(start.Add(500*time.Millisecond), 2, 3) {
		t.Fatal("the token was taken twice")
	}
	if !b.Allow(start.Add(time.Hour), 2, 3) || !b.Allow(start.Add(time.Hour), 2, 3) || !b.Allow(start.Add(time.Hour), 2, 3) || b.Allow(start.Add(time.Hour), 2, 3) {
		t.Fatal("an hour later: the bucket must hold its burst (3), no more")
	}

	var byRate RateBucket // burst 0: the rate's worth
	for i := range 5 {
		if !byRate.Allow(start, 5, 0) {
			t.Fatalf("invocation %d with rate 5 and no burst: refused", i+1)
		}
	}
	if byRate.Allow(start, 5, 0) {
		t.Fatal("a 6th invocation at once with rate 5 and no burst: allowed")
	}
	var slow RateBucket // rate below 1, no burst: one at a time
	if !slow.Allow(start, 0.5, 0) || slow.Allow(start, 0.5, 0) {
		t.Fatal("rate 0.5 and no burst: want exactly one invocation at once")
	}
	var none RateBucket
	for i := range 100 {
		if !none.Allow(start, 0, 0) {
			t.Fatalf("rate 0 (no limit): invocation %d refused", i+1)
		}
	}
}

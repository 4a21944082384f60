package monotime

import (
	"testing"
	"time"
)

// TestTimestamps: timestamps follow the monotonic clock: At of a time
// taken between two Now calls lies between them, and Since and Between
// measure what time.Since measures.
func TestTimestamps(t *testing.T) {
	before := Now()
	mid := time.Now()
	after := Now()
	if at := At(mid); at < before || at > after {
		t.Fatalf("At(now) = %d, want between %d and %d", at, before, after)
	}
	ref := time.Now()
	ts := Now()
	time.Sleep(20 * time.Millisecond)
	since := Since(ts)
	if upper := time.Since(ref); since < 20*time.Millisecond || since > upper {
		t.Fatalf("Since = %s after a 20 ms sleep, want at least that and at most %s", since, upper)
	}
	if got := Between(At(ref), ref.Add(time.Second)); got != time.Second {
		t.Fatalf("Between(At(t), t+1s) = %s", got)
	}
	if before < 0 {
		t.Fatalf("Now() = %d before the process start", before)
	}
}

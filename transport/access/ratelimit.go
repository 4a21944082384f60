package access

import "time"

// RateBucket is the token bucket that bounds a client's invocations: up to
// burst at once, refilled at rate per second. Its zero value is full. It
// has no lock of its own: its owner serialises calls.
type RateBucket struct {
	tokens float64   // invocations the bucket holds
	filled time.Time // when tokens was last topped up; zero: never (full)
}

// Allow takes a token, or reports false when the client is over the rate.
// rate <= 0 means no limit; burst < 1 means the rate's worth (at least 1).
func (b *RateBucket) Allow(now time.Time, rate float64, burst int) bool {
	if rate <= 0 {
		return true
	}
	size := float64(burst)
	if size < 1 {
		size = max(1, rate)
	}
	if b.filled.IsZero() {
		b.tokens = size
	} else {
		b.tokens = min(size, b.tokens+now.Sub(b.filled).Seconds()*rate)
	}
	b.filled = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

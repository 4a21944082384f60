// Package monotime gives timestamps that fit in an int64, for atomics,
// and that measure time with the monotonic clock: nanoseconds since the
// process started. Unix nanoseconds (time.Now().UnixNano()) carry no
// monotonic reading, so durations between them move when the wall clock
// is stepped or slewed: a step forward would make every connection look
// silent at once, a step back would keep a silent one alive.
package monotime

import "time"

// start is the origin of every timestamp; it carries a monotonic reading.
var start = time.Now()

// Now is the current timestamp.
func Now() int64 { return At(time.Now()) }

// At is t's timestamp; t must come from time.Now (with its monotonic
// reading), as it does in callers that take one now for a whole sweep.
func At(t time.Time) int64 { return int64(t.Sub(start)) }

// Since is the time elapsed since the timestamp ts.
func Since(ts int64) time.Duration { return time.Duration(Now() - ts) }

// Between is the time from the timestamp ts to t (see At).
func Between(ts int64, t time.Time) time.Duration { return time.Duration(At(t) - ts) }

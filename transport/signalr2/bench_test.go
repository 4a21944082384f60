//go:build unix

package signalr2

import (
	"syscall"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// BenchmarkPublishWithIdleConnections commits one message of a busy hub
// per op while 200 SignalR 2 WebSocket connections wait on a quiet hub,
// and reports the CPU the whole process spent per op (cpu-µs/op): what
// idle connections cost the traffic of hubs they are not in.
func BenchmarkPublishWithIdleConnections(b *testing.B) {
	tc := newTestCluster(b, fsm.DefaultRetention)
	_, hs := newTestServer(b, tc, Options{KeepAlive: time.Hour})
	for range 200 {
		ws := dialWS(b, negotiate(b, hs.URL, "", "quiet"), "connect", nil)
		readFrame(b, ws) // the init frame: the connection waits from here
	}
	busy := &fsm.Publish{Hub: "busy", Audience: fsm.ToAll, Target: "m", Arguments: []byte(`[1]`)}
	cpu := processCPU(b)
	b.ResetTimer()
	for range b.N {
		tc.publish(b, busy)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N)/float64(time.Microsecond), "cpu-µs/op")
}

// processCPU is the user and system CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

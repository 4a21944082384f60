package netconn

import (
	"github.com/backplane/backplane/internal/monotime"

	"sync"
	"sync/atomic"
	"time"
)

// KeepAlive sends a connection's keep-alive when nothing was written to it
// for a period. It waits on a timer, not on a goroutine: a connection
// whose writer runs only on demand (see Pump) stays goroutine-free while
// idle.
type KeepAlive struct {
	period time.Duration
	send   func() error // writes the keep-alive; an error calls fail
	fail   func()

	last atomic.Int64 // monotime of the last write

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// StartKeepAlive starts sending keep-alives every period of quiet; the
// connection counts as written to now. send must be safe to call beside
// the connection's writer (a control frame, or a write under the writer's
// lock); when it fails, fail is called and no keep-alive follows.
func StartKeepAlive(period time.Duration, send func() error, fail func()) *KeepAlive {
	k := &KeepAlive{period: period, send: send, fail: fail}
	k.Wrote()
	k.mu.Lock()
	k.timer = time.AfterFunc(period, k.tick)
	k.mu.Unlock()
	return k
}

// Wrote notes a write to the connection: the next keep-alive is due a
// period after it.
func (k *KeepAlive) Wrote() { k.last.Store(monotime.Now()) }

// Stop stops the keep-alives for good.
func (k *KeepAlive) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
}

func (k *KeepAlive) tick() {
	if quiet := monotime.Since(k.last.Load()); quiet < k.period {
		k.rearm(k.period - quiet)
		return
	}
	k.mu.Lock()
	stopped := k.stopped
	k.mu.Unlock()
	if stopped {
		return
	}
	if k.send() != nil {
		k.fail()
		return
	}
	k.Wrote()
	k.rearm(k.period)
}

func (k *KeepAlive) rearm(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.timer.Reset(d)
	}
}

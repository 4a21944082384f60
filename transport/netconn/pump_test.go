package netconn

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// changes is a stand-in for the store: a counter, and the callbacks to
// call once at its next change.
type changes struct {
	mu    sync.Mutex
	n     int
	calls map[int]func()
	next  int
}

func (c *changes) add() {
	c.mu.Lock()
	c.n++
	calls := c.calls
	c.calls = nil
	c.mu.Unlock()
	for _, fn := range calls {
		go fn()
	}
}

func (c *changes) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *changes) arm(fn func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[int]func(){}
	}
	id := c.next
	c.next++
	c.calls[id] = fn
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.calls[id]
		delete(c.calls, id)
		return ok
	}
}

func (c *changes) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// Changes that come while a writer runs, between its look and its return,
// or while none runs, are all sent, by one writer at a time.
func TestPumpMissesNoChange(t *testing.T) {
	var (
		src     changes
		sent    atomic.Int64
		writers atomic.Int32
		overlap atomic.Bool
	)
	var p *Pump
	p = NewPump(src.arm, func() bool {
		if writers.Add(1) > 1 {
			overlap.Store(true)
		}
		defer writers.Add(-1)
		for {
			p.Arm()
			n := int64(src.count())
			if n == sent.Load() {
				return true
			}
			sent.Store(n)
		}
	}, func() { t.Error("end called, want the pump to go on") })
	p.Run()
	const total = 20000
	for range total {
		src.add()
	}
	testkit.WaitFor(t, 10*time.Second, "every change to be sent", func() (bool, string) {
		return sent.Load() == total, fmt.Sprintf("%d of %d sent", sent.Load(), total)
	})
	if overlap.Load() {
		t.Fatal("two writers ran at once")
	}
	testkit.WaitFor(t, 5*time.Second, "the writer to return, leaving one wake-up armed", func() (bool, string) {
		return writers.Load() == 0 && src.armed() == 1, fmt.Sprintf("%d writers, %d armed", writers.Load(), src.armed())
	})
}

// A writer that asks to end calls end; after Finish nothing starts a
// writer and the armed wake-up is cancelled.
func TestPumpFinish(t *testing.T) {
	var src changes
	var sends, ends atomic.Int32
	var p *Pump
	p = NewPump(src.arm, func() bool {
		p.Arm()
		return sends.Add(1) < 2 // the second look fails
	}, func() {
		ends.Add(1)
		if !p.Finish() {
			t.Error("Finish from end: got false, want true (the first call)")
		}
	})
	p.Run()
	if sends.Load() != 1 || src.armed() != 1 {
		t.Fatalf("after Run: %d sends, %d armed, want 1 and 1", sends.Load(), src.armed())
	}
	src.add()
	testkit.WaitFor(t, 5*time.Second, "the woken writer to end the pump", func() (bool, string) {
		return ends.Load() == 1, fmt.Sprintf("%d ends", ends.Load())
	})
	if src.armed() != 0 {
		t.Fatalf("after Finish: %d wake-ups armed, want 0", src.armed())
	}
	p.Wake()
	p.Run()
	if p.Finish() {
		t.Fatal("a second Finish: got true, want false")
	}
	if got := sends.Load(); got != 2 {
		t.Fatalf("sends after Finish, Wake and Run: got %d, want 2", got)
	}
}

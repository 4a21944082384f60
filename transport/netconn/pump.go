package netconn

import "sync"

// Pump runs a connection's writer only while it has something to send, so
// that an idle connection holds no goroutine for its writes either. The
// writer (send) sends what there is and returns; before each look at what
// to send it calls Arm, which asks for a wake-up at the next change (arm
// registers Pump's callback with whatever announces changes). A wake-up
// starts a writer, or, while one runs, makes it look once more: no change
// between its last look and its return is missed, and at most one writer
// runs at a time.
type Pump struct {
	arm  func(wake func()) (stop func() bool)
	send func() bool
	end  func()

	mu       sync.Mutex
	running  bool        // a writer runs
	again    bool        // a wake-up came while it ran
	waiting  func() bool // stops the armed wake-up; nil when none
	finished bool
}

// NewPump returns a pump whose writer is send (false: the connection must
// end, and end is called); arm registers wake to be called once at the
// next change, and returns what cancels that.
func NewPump(arm func(wake func()) (stop func() bool), send func() bool, end func()) *Pump {
	return &Pump{arm: arm, send: send, end: end}
}

// Run runs the first writer on the calling goroutine, until there is
// nothing more to send.
func (p *Pump) Run() {
	p.mu.Lock()
	if p.running || p.finished {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	p.run()
}

// Wake starts a writer on a goroutine of its own, or makes the running one
// look once more. After Finish it does nothing.
func (p *Pump) Wake() {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	if p.running {
		p.again = true
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	go p.run()
}

// woken is the armed callback: the wake-up it stood for is spent.
func (p *Pump) woken() {
	p.mu.Lock()
	p.waiting = nil
	p.mu.Unlock()
	p.Wake()
}

// Arm asks for a wake-up at the next change unless one is asked already.
// The writer calls it before each look at what to send.
func (p *Pump) Arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil && !p.finished {
		p.waiting = p.arm(p.woken)
	}
}

// Finish stops the pump for good: no writer starts again and the armed
// wake-up is cancelled. It reports whether this call finished it (false
// when it was finished already), so that the caller ends its connection
// once. A writer running meanwhile ends at its next return.
func (p *Pump) Finish() bool {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return false
	}
	p.finished = true
	stop := p.waiting
	p.waiting = nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	return true
}

// run sends until there is nothing more to send; a wake-up that came
// meanwhile makes it go round again.
func (p *Pump) run() {
	for {
		if !p.send() {
			p.end()
		}
		p.mu.Lock()
		if p.again && !p.finished {
			p.again = false
			p.mu.Unlock()
			continue
		}
		p.running = false
		p.mu.Unlock()
		return
	}
}

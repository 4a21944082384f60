package netconn

// Cleanups are what a request undoes when its handler returns: its place
// in a per-address count, a liveness record. A WebSocket outlives its
// handler: it takes them over (Keep) and runs them when it ends. A
// Cleanups is used by one goroutine at a time (the handler, then the
// socket's owner).
type Cleanups struct {
	fns  []func()
	kept bool
	ran  bool
}

// Add adds fn, to run before those added earlier.
func (c *Cleanups) Add(fn func()) { c.fns = append(c.fns, fn) }

// Done runs them at the end of the handler, unless they were kept.
func (c *Cleanups) Done() {
	if !c.kept {
		c.Run()
	}
}

// Keep takes them over from the handler: Done no longer runs them; the
// new owner calls Run on the returned Cleanups.
func (c *Cleanups) Keep() *Cleanups {
	c.kept = true
	return c
}

// Run runs them, the last added first, once: later calls do nothing.
func (c *Cleanups) Run() {
	if c.ran {
		return
	}
	c.ran = true
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
}

package fsm

import "sync"

// hubWaiters wakes the readers of one hub, not every reader of the node:
// a stream waiting at the end of its hub sleeps through the entries of
// other hubs. With one channel for everything, every applied entry woke
// every waiting stream and SignalR 2 connection of the node, each to read
// its state and find nothing new.
//
// A hub is woken by every entry that changes something of it (a message,
// a membership, a connection record, an invocation, a checkpoint), and
// every hub by a restore or a close. A hub has a channel only while
// someone waits on it alone; waking it closes the channel and forgets it,
// so the next waiter makes a new one. A wait on several hubs at once, and
// a callback (a waiter without a goroutine), has an entry of its own,
// listed under each of its hubs until it fires or its waiter stops it.
type hubWaiters struct {
	mu    sync.Mutex
	ch    map[string]chan struct{}           // by hub: the shared channel of single-hub waits
	multi map[string]map[*multiWait]struct{} // by hub: the waits on several hubs, and callbacks, that include it
}

// multiWait is a wait on several hubs, or a callback: ch is closed, or fn
// called, once.
type multiWait struct {
	ch    chan struct{}
	fn    func()
	hubs  []string
	fired bool
}

// wait returns a channel that is closed at the next change of hub.
func (w *hubWaiters) wait(hub string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.ch[hub]
	if ch == nil {
		if w.ch == nil {
			w.ch = make(map[string]chan struct{})
		}
		ch = make(chan struct{})
		w.ch[hub] = ch
	}
	return ch
}

// waitAny returns a channel that is closed at the next change of any of
// hubs, and a stop that the waiter must call once it no longer waits.
func (w *hubWaiters) waitAny(hubs []string) (<-chan struct{}, func()) {
	if len(hubs) == 1 {
		return w.wait(hubs[0]), func() {}
	}
	mw := &multiWait{ch: make(chan struct{}), hubs: hubs}
	w.list(mw)
	return mw.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.unlist(mw)
	}
}

// after calls fn, on a goroutine of its own, at the next change of any of
// hubs; it waits without a goroutine until then. stop cancels the call and
// reports whether it did (false: fn has been or is being called).
func (w *hubWaiters) after(hubs []string, fn func()) (stop func() bool) {
	mw := &multiWait{fn: fn, hubs: hubs}
	w.list(mw)
	return func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if mw.fired {
			return false
		}
		w.unlist(mw)
		return true
	}
}

// list adds mw under each of its hubs.
func (w *hubWaiters) list(mw *multiWait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.multi == nil {
		w.multi = make(map[string]map[*multiWait]struct{})
	}
	for _, hub := range mw.hubs {
		set := w.multi[hub]
		if set == nil {
			set = make(map[*multiWait]struct{})
			w.multi[hub] = set
		}
		set[mw] = struct{}{}
	}
}

// unlist removes mw from the sets of its hubs; w.mu is held.
func (w *hubWaiters) unlist(mw *multiWait) {
	for _, hub := range mw.hubs {
		set := w.multi[hub]
		delete(set, mw)
		if len(set) == 0 {
			delete(w.multi, hub)
		}
	}
}

// wakeLocked wakes the waiters of hub and appends the callbacks due to
// calls; w.mu is held.
func (w *hubWaiters) wakeLocked(hub string, calls []func()) []func() {
	if ch, ok := w.ch[hub]; ok {
		close(ch)
		delete(w.ch, hub)
	}
	for mw := range w.multi[hub] {
		mw.fired = true
		if mw.fn != nil {
			calls = append(calls, mw.fn)
		} else {
			close(mw.ch)
		}
		w.unlist(mw) // from every hub: it fires once
	}
	return calls
}

// wake wakes the waiters of each of hubs.
func (w *hubWaiters) wake(hubs map[string]struct{}) {
	if len(hubs) == 0 {
		return
	}
	w.mu.Lock()
	if len(w.ch) == 0 && len(w.multi) == 0 {
		w.mu.Unlock()
		return
	}
	var calls []func()
	for hub := range hubs {
		calls = w.wakeLocked(hub, calls)
	}
	w.mu.Unlock()
	start(calls)
}

// wakeAll wakes every waiter.
func (w *hubWaiters) wakeAll() {
	w.mu.Lock()
	var calls []func()
	for hub := range w.ch {
		calls = w.wakeLocked(hub, calls)
	}
	for hub := range w.multi {
		calls = w.wakeLocked(hub, calls)
	}
	w.mu.Unlock()
	start(calls)
}

// start runs each call on a goroutine of its own: the applier must not
// wait for readers.
func start(calls []func()) {
	for _, fn := range calls {
		go fn()
	}
}

package fsm

import "sync"

// A Watch names what a reader waits for: the messages of a hub, or the
// state of one connection or one user in a hub (its record, its groups,
// its invocations' completions and checkpoints). An applied entry wakes
// the waiters of exactly what it changed, so a native stream sleeps
// through other hubs' traffic and through the opens and joins of its own
// hub, and a SignalR 2 connection through other connections' opens,
// closes and joins. A restore or a close wakes every waiter.
type Watch string

// Watch kinds, the first byte of a Watch.
const (
	watchMessages   = 'm'
	watchConnection = 'c'
	watchUser       = 'u'
)

// MessagesOf watches the messages of hub.
func MessagesOf(hub string) Watch { return Watch(string(rune(watchMessages)) + "\x00" + hub) }

// ConnectionOf watches a connection's state in hub: its record, its group
// memberships, its invocations' completions and checkpoints.
func ConnectionOf(hub, conn string) Watch {
	return Watch(string(rune(watchConnection)) + "\x00" + hub + "\x00" + conn)
}

// UserOf watches a user's group memberships in hub.
func UserOf(hub, user string) Watch {
	return Watch(string(rune(watchUser)) + "\x00" + hub + "\x00" + user)
}

// memberWatch is the Watch a membership change of a member touches.
func memberWatch(hub string, kind MemberKind, member string) Watch {
	if kind == MemberUser {
		return UserOf(hub, member)
	}
	return ConnectionOf(hub, member)
}

// watchers wakes the waiters of what an applied batch changed. A Watch
// has a shared channel while someone waits on it alone; waking it closes
// the channel and forgets it, so the next waiter makes a new one. A wait
// on several Watches, and a callback (a waiter without a goroutine), has
// an entry of its own, listed under each of its Watches until it fires or
// its waiter stops it.
type watchers struct {
	mu    sync.Mutex
	ch    map[Watch]chan struct{} // the shared channel of single waits
	multi map[Watch]*waitSet      // the waits on several Watches, and callbacks, that include it
}

// waitSet is the multiWaits listed under one Watch. Most Watches (a
// connection's own) have one waiter: it is held without a map.
type waitSet struct {
	one  *multiWait
	more map[*multiWait]struct{}
}

func (ws *waitSet) add(mw *multiWait) {
	switch {
	case ws.one == nil && len(ws.more) == 0:
		ws.one = mw
	default:
		if ws.more == nil {
			ws.more = make(map[*multiWait]struct{})
		}
		ws.more[mw] = struct{}{}
	}
}

func (ws *waitSet) remove(mw *multiWait) {
	if ws.one == mw {
		ws.one = nil
		return
	}
	delete(ws.more, mw)
}

func (ws *waitSet) empty() bool { return ws.one == nil && len(ws.more) == 0 }

// all lists the waiters (a copy: waking them changes the set).
func (ws *waitSet) all() []*multiWait {
	out := make([]*multiWait, 0, 1+len(ws.more))
	if ws.one != nil {
		out = append(out, ws.one)
	}
	for mw := range ws.more {
		out = append(out, mw)
	}
	return out
}

// multiWait is a wait on several Watches, or a callback: ch is closed, or
// fn called, once.
type multiWait struct {
	ch      chan struct{}
	fn      func()
	watches []Watch
	fired   bool
}

// wait returns a channel that is closed at the next change of w.
func (ws *watchers) wait(w Watch) <-chan struct{} {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ch := ws.ch[w]
	if ch == nil {
		if ws.ch == nil {
			ws.ch = make(map[Watch]chan struct{})
		}
		ch = make(chan struct{})
		ws.ch[w] = ch
	}
	return ch
}

// waitAny returns a channel that is closed at the next change of any of
// watches, and a stop that the waiter must call once it no longer waits.
func (ws *watchers) waitAny(watches []Watch) (<-chan struct{}, func()) {
	if len(watches) == 1 {
		return ws.wait(watches[0]), func() {}
	}
	mw := &multiWait{ch: make(chan struct{}), watches: watches}
	ws.list(mw)
	return mw.ch, func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		ws.unlist(mw)
	}
}

// after calls fn, on a goroutine of its own, at the next change of any of
// watches; it waits without a goroutine until then. stop cancels the call
// and reports whether it did (false: fn has been or is being called).
func (ws *watchers) after(watches []Watch, fn func()) (stop func() bool) {
	mw := &multiWait{fn: fn, watches: watches}
	ws.list(mw)
	return func() bool {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if mw.fired {
			return false
		}
		ws.unlist(mw)
		return true
	}
}

// list adds mw under each of its Watches.
func (ws *watchers) list(mw *multiWait) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.multi == nil {
		ws.multi = make(map[Watch]*waitSet)
	}
	for _, w := range mw.watches {
		set := ws.multi[w]
		if set == nil {
			set = &waitSet{}
			ws.multi[w] = set
		}
		set.add(mw)
	}
}

// unlist removes mw from the sets of its Watches; ws.mu is held.
func (ws *watchers) unlist(mw *multiWait) {
	for _, w := range mw.watches {
		if set := ws.multi[w]; set != nil {
			set.remove(mw)
			if set.empty() {
				delete(ws.multi, w)
			}
		}
	}
}

// wakeLocked wakes the waiters of w and appends the callbacks due to
// calls; ws.mu is held.
func (ws *watchers) wakeLocked(w Watch, calls []func()) []func() {
	if ch, ok := ws.ch[w]; ok {
		close(ch)
		delete(ws.ch, w)
	}
	set := ws.multi[w]
	if set == nil {
		return calls
	}
	for _, mw := range set.all() {
		mw.fired = true
		if mw.fn != nil {
			calls = append(calls, mw.fn)
		} else {
			close(mw.ch)
		}
		ws.unlist(mw) // from every Watch: it fires once
	}
	return calls
}

// wake wakes the waiters of each of changed.
func (ws *watchers) wake(changed map[Watch]struct{}) {
	if len(changed) == 0 {
		return
	}
	ws.mu.Lock()
	if len(ws.ch) == 0 && len(ws.multi) == 0 {
		ws.mu.Unlock()
		return
	}
	var calls []func()
	for w := range changed {
		calls = ws.wakeLocked(w, calls)
	}
	ws.mu.Unlock()
	start(calls)
}

// wakeAll wakes every waiter.
func (ws *watchers) wakeAll() {
	ws.mu.Lock()
	var calls []func()
	for w := range ws.ch {
		calls = ws.wakeLocked(w, calls)
	}
	for w := range ws.multi {
		calls = ws.wakeLocked(w, calls)
	}
	ws.mu.Unlock()
	start(calls)
}

// start runs each call on a goroutine of its own: the applier must not
// wait for readers.
func start(calls []func()) {
	for _, fn := range calls {
		go fn()
	}
}

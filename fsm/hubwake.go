package fsm

import "sync"

// hubWaiters wakes the readers of one hub, not every reader of the node:
// a native stream waiting at the end of its hub sleeps through the
// entries of other hubs and the entries that carry no message (opens,
// joins, checkpoints). With one channel for everything, every applied
// entry woke every waiting stream of the node, each to read and find
// nothing.
//
// A hub has a channel only while someone waits on it; applying a message
// of the hub closes the channel and forgets it, so the next waiter makes a
// new one.
type hubWaiters struct {
	mu sync.Mutex
	ch map[string]chan struct{} // by hub
}

// wait returns a channel that is closed once a message of hub is applied
// or every reader must look again (a restore, a close).
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

// wake closes the channels of the hubs msgs are for.
func (w *hubWaiters) wake(msgs []Message) {
	if len(msgs) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ch) == 0 {
		return
	}
	for i := range msgs {
		if ch, ok := w.ch[msgs[i].Hub]; ok {
			close(ch)
			delete(w.ch, msgs[i].Hub)
		}
	}
}

// wakeAll closes every channel.
func (w *hubWaiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for hub, ch := range w.ch {
		close(ch)
		delete(w.ch, hub)
	}
}

package fsm

import (
	"slices"
	"sync"
)

// The tail keeps the most recently applied messages in memory, so that
// readers near the end of the log (every live stream, and the SignalR
// dispatcher) are served without a store transaction: when a batch is
// applied, every waiting reader wakes and reads what is new, and with
// hundreds of readers per node one bbolt read each per batch was most of a
// node's work. A reader whose cursor is before the tail reads the store,
// as before; both paths give the same pages (tail_test.go checks it).

// Bounds of the tail: the newest messages, at most this many and about
// this many bytes of arguments.
const (
	tailMessages = 4096
	tailBytes    = 8 << 20
)

// tail is a window of consecutive messages ending at the last applied one.
type tail struct {
	mu    sync.RWMutex
	msgs  []Message // consecutive indexes, oldest first
	bytes int       // of the arguments in msgs
}

// add appends the messages a batch applied (consecutive, after the last
// one held) and drops those retention trimmed (below first) and those
// beyond the bounds. A batch that does not follow the tail (after a
// restore) replaces it.
//
// Dropping reslices from the front; the messages move only when the
// backing array is full, to a new one with room for as many again, so a
// batch costs its own messages, not a copy of the whole tail (copying
// ~4,096 messages down on every batch was ~600 KB of moves per applied
// entry on every node).
func (t *tail) add(msgs []Message, first uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(msgs) > 0 && len(t.msgs) > 0 && msgs[0].Index != t.msgs[len(t.msgs)-1].Index+1 {
		clear(t.msgs)
		t.msgs, t.bytes = nil, 0
	}
	if need := len(t.msgs) + len(msgs); need > cap(t.msgs) {
		grown := make([]Message, len(t.msgs), max(2*need, 64))
		copy(grown, t.msgs)
		clear(t.msgs) // the old array may be held no longer, but be sure
		t.msgs = grown
	}
	for i := range msgs {
		t.msgs = append(t.msgs, msgs[i])
		t.bytes += len(msgs[i].Arguments) + len(msgs[i].MsgpackArguments)
	}
	drop := 0
	for drop < len(t.msgs) && (t.msgs[drop].Index < first || len(t.msgs)-drop > tailMessages || t.bytes > tailBytes) {
		t.bytes -= len(t.msgs[drop].Arguments) + len(t.msgs[drop].MsgpackArguments)
		drop++
	}
	if drop > 0 {
		// Release the dropped messages' arguments now, not when the
		// array is next replaced.
		clear(t.msgs[:drop])
		t.msgs = t.msgs[drop:]
	}
}

// reset empties the tail (the store was replaced by a restore).
func (t *tail) reset() {
	t.mu.Lock()
	t.msgs, t.bytes = nil, 0
	t.mu.Unlock()
}

// read serves Read from the tail when it holds every message after the
// cursor; ok is false when the reader must read the store. The page is the
// one readPage would build: at most limit messages addressed to r (counted
// before the messages that exclude r.Self are dropped), and Next past the
// last one looked at.
func (t *tail) read(r *Filter, after uint64, limit int) (page Page, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	lo, ok := t.covers(after)
	if !ok {
		return page, false
	}
	last := t.msgs[len(t.msgs)-1].Index
	page.Next = max(after, last)
	n := 0
	for i := int(after + 1 - lo); i >= 0 && i < len(t.msgs) && n < limit; i++ {
		m := &t.msgs[i]
		if !r.addressedBy(m) {
			continue
		}
		n++
		if n == limit {
			page.Next = m.Index
		}
		if r.Self != "" && slices.Contains(m.Excluded, r.Self) {
			continue
		}
		page.Messages = append(page.Messages, *m)
	}
	return page, true
}

// readAll serves ReadAll from the tail when it holds every message after
// the cursor.
func (t *tail) readAll(after uint64, limit int) (page Page, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	lo, ok := t.covers(after)
	if !ok {
		return page, false
	}
	page.Next = max(after, t.msgs[len(t.msgs)-1].Index)
	for i := int(after + 1 - lo); i >= 0 && i < len(t.msgs) && len(page.Messages) < limit; i++ {
		page.Messages = append(page.Messages, t.msgs[i])
	}
	if len(page.Messages) == limit {
		page.Next = page.Messages[limit-1].Index
	}
	return page, true
}

// covers reports whether the tail holds every message after the cursor,
// and the index of its oldest message. A cursor at or past the newest
// message is covered too: there is nothing after it yet.
func (t *tail) covers(after uint64) (lo uint64, ok bool) {
	if len(t.msgs) == 0 {
		return 0, false
	}
	lo = t.msgs[0].Index
	return lo, after >= lo-1
}

// addressedBy reports whether m is on one of the reader's streams: the
// hub's broadcasts if r.Broadcast, and messages naming one of r's groups,
// users or connections (as the store's stream index lists them).
func (r *Filter) addressedBy(m *Message) bool {
	if m.Hub != r.Hub {
		return false
	}
	switch m.Audience {
	case ToAll:
		return r.Broadcast
	case ToGroups:
		return intersects(m.Names, r.Groups)
	case ToUsers:
		return intersects(m.Names, r.Users)
	case ToConnections:
		return intersects(m.Names, r.Connections)
	}
	return false
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

package signalr

import "sync"

// outQueue is a connection's bounded queue of outgoing records. It holds no
// memory while empty (an idle connection costs nothing here), and the
// writer takes everything queued at once, so several records share one
// WebSocket frame, SSE event or poll response.
type outQueue struct {
	mu   sync.Mutex
	recs [][]byte
	// held is the pooled array recs lives in while records are queued (see
	// recsPool); nil while the queue is empty.
	held  *[][]byte
	max   int
	ready chan struct{} // signalled when records are waiting
}

// recsPool lends queues their arrays while records wait: under fan-out a
// connection's queue fills and empties at every frame, and growing a fresh
// array from nothing each time was five allocations a burst; an empty
// queue gives its array back, so an idle connection still holds none.
var recsPool = sync.Pool{New: func() any {
	a := make([][]byte, 0, 16)
	return &a
}}

// maxPooledRecs bounds the arrays given back to the pool: a slow client's
// long queue is not kept for others.
const maxPooledRecs = 256

// release gives the (empty) queue's array back to the pool.
func (q *outQueue) release() {
	if q.held != nil && cap(q.recs) <= maxPooledRecs {
		clear(q.recs[:cap(q.recs)])
		*q.held = q.recs[:0]
		recsPool.Put(q.held)
	}
	q.held, q.recs = nil, nil
}

func newOutQueue(max int) *outQueue {
	return &outQueue{max: max, ready: make(chan struct{}, 1)}
}

func (q *outQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// push queues a record and signals the queue; false when it is full.
func (q *outQueue) push(rec []byte) bool {
	ok, _ := q.pushQuiet(rec)
	if ok {
		q.signal()
	}
	return ok
}

// pushQuiet queues a record without signalling anyone: the caller wakes
// the connection's writer later, once for many records, so they share a
// frame. ok is false when the queue is full; first reports that the queue
// was empty before, which is when the caller must wake the writer (a
// queue that already held records has a wake-up pending).
func (q *outQueue) pushQuiet(rec []byte) (ok, first bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) >= q.max {
		return false, false
	}
	first = len(q.recs) == 0
	if q.held == nil {
		q.held = recsPool.Get().(*[][]byte)
		q.recs = (*q.held)[:0]
	}
	q.recs = append(q.recs, rec)
	return true, first
}

// take appends queued records to dst, at least one and then as many as fit
// in maxBytes, and removes them from the queue.
func (q *outQueue) take(dst []byte, maxBytes int) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for n < len(q.recs) && (n == 0 || len(dst)+len(q.recs[n]) <= maxBytes) {
		dst = append(dst, q.recs[n]...)
		q.recs[n] = nil
		n++
	}
	if n == len(q.recs) {
		q.release()
	} else {
		m := copy(q.recs, q.recs[n:]) // the array stays at its start, for release
		clear(q.recs[m:])
		q.recs = q.recs[:m]
		q.signal()
	}
	return dst
}

// pending reports whether records are queued.
func (q *outQueue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs) > 0
}

// clear drops every queued record.
func (q *outQueue) clear() {
	q.mu.Lock()
	q.release()
	q.mu.Unlock()
}

// setMax changes the bound.
func (q *outQueue) setMax(max int) {
	q.mu.Lock()
	q.max = max
	q.mu.Unlock()
}

package netconn

import "sync"

// maxKeptBuffer is the largest buffer Buffers keeps: one grown by a burst
// is left to the garbage collector.
const maxKeptBuffer = 16 << 10

// Buffers lends the buffers writers frame their writes in, so that an
// idle connection keeps none. The zero value is ready to use; it must not
// be copied.
type Buffers struct{ pool sync.Pool }

// Get lends an empty buffer. Store what it grew to in it (*b = grown)
// before giving it back with Put.
func (p *Buffers) Get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 1024)
	return &b
}

// Put takes a buffer back, unless it grew past 16 KiB.
func (p *Buffers) Put(b *[]byte) {
	if cap(*b) > maxKeptBuffer {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}

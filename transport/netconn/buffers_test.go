package netconn

import "testing"

// TestBuffers: a lent buffer is empty, comes back with what it grew to,
// and one grown past 16 KiB is not kept.
func TestBuffers(t *testing.T) {
	var p Buffers
	b := p.Get()
	if len(*b) != 0 || cap(*b) == 0 {
		t.Fatalf("lent buffer: len %d cap %d, want empty with room", len(*b), cap(*b))
	}
	*b = append(*b, "hello"...)
	p.Put(b)
	if len(*b) != 0 {
		t.Fatalf("a buffer given back keeps %d bytes, want none", len(*b))
	}

	big := p.Get()
	*big = make([]byte, 0, maxKeptBuffer+1)
	p.Put(big)
	for range 100 { // sync.Pool may drop what it holds, never return what it was not given
		got := p.Get()
		if cap(*got) > maxKeptBuffer {
			t.Fatalf("got back a %d-byte buffer; buffers past %d must not be kept", cap(*got), maxKeptBuffer)
		}
	}
}

package netconn

import (
	"slices"
	"testing"
)

// TestCleanups: Done runs them in reverse order unless they were kept;
// the owner that kept them runs them once.
func TestCleanups(t *testing.T) {
	var ran []int
	add := func(c *Cleanups) {
		for i := range 3 {
			c.Add(func() { ran = append(ran, i) })
		}
	}

	var handler Cleanups
	add(&handler)
	handler.Done()
	handler.Done()
	if want := []int{2, 1, 0}; !slices.Equal(ran, want) {
		t.Fatalf("Done ran %v, want %v once", ran, want)
	}

	ran = nil
	var socket Cleanups
	add(&socket)
	kept := socket.Keep()
	socket.Done() // the handler returns: the socket lives on
	if len(ran) != 0 {
		t.Fatalf("Done after Keep ran %v, want nothing", ran)
	}
	kept.Run()
	kept.Run()
	if want := []int{2, 1, 0}; !slices.Equal(ran, want) {
		t.Fatalf("the owner's Run ran %v, want %v once", ran, want)
	}
}

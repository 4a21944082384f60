package signalr

import (
	"fmt"
	"testing"
)

// TestOutQueue: records come out in order, a take bounded by bytes leaves
// the rest queued (and signalled), a full queue refuses, and an emptied
// queue holds no array.
func TestOutQueue(t *testing.T) {
	q := newOutQueue(40)
	for i := range 40 {
		ok, first := q.pushQuiet(fmt.Appendf(nil, "r%02d;", i))
		if !ok || first != (i == 0) {
			t.Fatalf("push %d: ok %v, first %v", i, ok, first)
		}
	}
	if ok, _ := q.pushQuiet([]byte("over")); ok {
		t.Fatal("a full queue took a record")
	}
	got := string(q.take(nil, 4*10)) // ten records of four bytes
	if want := "r00;r01;r02;r03;r04;r05;r06;r07;r08;r09;"; got != want {
		t.Fatalf("first take %q, want %q", got, want)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("records left after a take, but the queue is not signalled")
	}
	if ok, _ := q.pushQuiet([]byte("r40;")); !ok {
		t.Fatal("push after a take refused")
	}
	got = string(q.take(nil, 1<<20))
	want := ""
	for i := 10; i <= 40; i++ {
		want += fmt.Sprintf("r%02d;", i)
	}
	if got != want {
		t.Fatalf("second take %q, want %q", got, want)
	}
	if q.pending() || q.held != nil || q.recs != nil {
		t.Fatalf("emptied queue: pending %v, holds an array %v", q.pending(), q.held != nil)
	}
	// A take always returns at least one record, even past maxBytes.
	q.pushQuiet([]byte("a long record"))
	if got := string(q.take(nil, 1)); got != "a long record" {
		t.Fatalf("take past maxBytes: %q", got)
	}
	q.pushQuiet([]byte("x"))
	q.clear()
	if q.pending() || q.held != nil {
		t.Fatal("cleared queue still holds records or an array")
	}
}

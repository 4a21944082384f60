package main

import (
	"bufio"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

func respFrom(s string) *respConn {
	return &respConn{br: bufio.NewReader(strings.NewReader(s))}
}

func TestRESPReadsEveryReplyType(t *testing.T) {
	r := respFrom("+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n:7\r\n-ERR boom\r\n")
	want := []any{"OK", int64(42), []byte("abc"), nil, []any{[]byte("x"), int64(7)}}
	for i, w := range want {
		v, err := r.read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Errorf("reply %d = %#v, want %#v", i, v, w)
		}
	}
	if _, err := r.read(); err == nil || !strings.Contains(err.Error(), "ERR boom") {
		t.Errorf("error reply: got %v, want ERR boom", err)
	}
}

func TestRESPRefusesMalformedReplies(t *testing.T) {
	for _, in := range []string{"$99999999999\r\n", "*-5\r\n", "?x\r\n", "+OK\n", "$5\r\nab"} {
		if _, err := respFrom(in).read(); err == nil {
			t.Errorf("%q: read without error", in)
		}
	}
}

func TestRedisReadersCountEntriesAndStamps(t *testing.T) {
	var rr redisReaders
	data := make([]byte, 16)
	sent := time.Now().Add(-5 * time.Millisecond)
	binary.LittleEndian.PutUint64(data, uint64(sent.UnixNano()))
	entry := func(id string) any { return []any{[]byte(id), []any{[]byte("d"), data}} }
	reply := []any{[]any{[]byte("bench"), []any{entry("1-0"), entry("2-0")}}}
	last := rr.entries(reply, sent.Add(5*time.Millisecond))
	if string(last) != "2-0" || rr.received.Load() != 2 {
		t.Fatalf("last %q, received %d; want 2-0, 2", last, rr.received.Load())
	}
	if s := rr.consume.Summary(); s.Count != 2 || s.P50MS < 4.5 || s.P50MS > 5.5 {
		t.Errorf("consume latency %+v, want 2 samples near 5 ms", s)
	}
	if rr.entries(nil, time.Now()) != nil {
		t.Error("an empty (timed-out) XREAD reply moved the cursor")
	}
}

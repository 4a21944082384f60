package main

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisReadersCountEntriesAndStamps(t *testing.T) {
	var rr peerRun
	data := make([]byte, 16)
	sent := time.Now().Add(-5 * time.Millisecond)
	binary.LittleEndian.PutUint64(data, uint64(sent.UnixNano()))
	// go-redis reads RESP2 bulk strings as strings.
	entry := func(id string) redis.XMessage {
		return redis.XMessage{ID: id, Values: map[string]any{redisField: string(data)}}
	}
	reply := []redis.XStream{{Stream: "bench", Messages: []redis.XMessage{entry("1-0"), entry("2-0")}}}
	last := rr.entries(reply, sent.Add(5*time.Millisecond))
	if last != "2-0" || rr.received.Load() != 2 {
		t.Fatalf("last %q, received %d; want 2-0, 2", last, rr.received.Load())
	}
	if s := rr.consume.Summary(); s.Count != 2 || s.P50MS < 4.5 || s.P50MS > 5.5 {
		t.Errorf("consume latency %+v, want 2 samples near 5 ms", s)
	}
	if rr.entries(nil, time.Now()) != "" {
		t.Error("an empty (timed-out) XREAD reply moved the cursor")
	}
	// An entry without a stamp is counted but not timed.
	short := []redis.XStream{{Stream: "bench", Messages: []redis.XMessage{{ID: "3-0", Values: map[string]any{redisField: "short"}}}}}
	if last := rr.entries(short, time.Now()); last != "3-0" || rr.received.Load() != 3 || rr.consume.Summary().Count != 2 {
		t.Errorf("unstamped entry: last %q, received %d, timed %d; want 3-0, 3, 2", last, rr.received.Load(), rr.consume.Summary().Count)
	}
}

package fsm

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkTailAdd: one applied batch added to a full tail (the steady
// state of every node under load), per batch size.
func BenchmarkTailAdd(b *testing.B) {
	for _, per := range []int{1, 10} {
		b.Run(fmt.Sprintf("msgs=%d", per), func(b *testing.B) {
			var t tail
			args := json.RawMessage(`["` + strings.Repeat("x", 190) + `"]`)
			next := uint64(1)
			batch := func() []Message {
				msgs := make([]Message, per)
				for i := range msgs {
					msgs[i] = Message{Index: next, Hub: "chat", Audience: ToAll, Target: "m", Arguments: args}
					next++
				}
				return msgs
			}
			for range tailMessages / per {
				t.add(batch(), 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t.add(batch(), 1)
			}
			if len(t.msgs) != tailMessages || t.msgs[len(t.msgs)-1].Index != next-1 {
				b.Fatalf("tail holds %d messages ending at %d, want %d ending at %d", len(t.msgs), t.msgs[len(t.msgs)-1].Index, tailMessages, next-1)
			}
		})
	}
}

package hubproto

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// rs is the JSON record separator as a string, for building test input.
const rs = "\x1e"

// normalize returns a copy of m in which empty slices and maps are nil and
// empty raw values are zero, so that equivalent messages compare equal.
func normalize(m Message) Message {
	norm := func(v RawValue) RawValue {
		if len(v.Data) == 0 {
			return RawValue{}
		}
		return v
	}
	if len(m.Arguments) == 0 {
		m.Arguments = nil
	} else {
		args := make([]RawValue, len(m.Arguments))
		for i, a := range m.Arguments {
			args[i] = norm(a)
		}
		m.Arguments = args
	}
	if len(m.StreamIDs) == 0 {
		m.StreamIDs = nil
	}
	if len(m.Headers) == 0 {
		m.Headers = nil
	}
	m.Item, m.Result = norm(m.Item), norm(m.Result)
	return m
}

// formatRaw renders a raw value for failure messages.
func formatRaw(v RawValue) string {
	switch v.Format {
	case FormatJSON:
		return "json:" + string(v.Data)
	case FormatMsgpack:
		return "mp:" + hex.EncodeToString(v.Data)
	}
	return fmt.Sprintf("raw(%d):%x", v.Format, v.Data)
}

// formatMessage renders a message for failure messages.
func formatMessage(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{%v id=%q target=%q args=[", m.Type, m.InvocationID, m.Target)
	for i, a := range m.Arguments {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(formatRaw(a))
	}
	fmt.Fprintf(&b, "] streams=%q item=%s result=%s hasResult=%v error=%q allowReconnect=%v seq=%d headers=%v}",
		m.StreamIDs, formatRaw(m.Item), formatRaw(m.Result), m.HasResult, m.Error, m.AllowReconnect, m.SequenceID, m.Headers)
	return b.String()
}

// messagesEqual compares two messages after normalisation.
func messagesEqual(a, b Message) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// assertMessages fails the test unless got and want hold equal messages.
func assertMessages(t *testing.T, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d:\n got: %s", len(got), len(want), formatMessages(got))
	}
	for i := range got {
		if !messagesEqual(got[i], want[i]) {
			t.Errorf("message %d:\n got: %s\nwant: %s", i, formatMessage(got[i]), formatMessage(want[i]))
		}
	}
}

func formatMessages(ms []Message) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = formatMessage(m)
	}
	return strings.Join(parts, "\n      ")
}

// unhex decodes hex bytes written with optional spaces, e.g. "95 01 80".
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// frame prefixes a MessagePack body with its VarInt length.
func frame(body []byte) []byte {
	return append(appendVarint(nil, len(body)), body...)
}

// jv and mv build raw values from literals.
func jv(s string) RawValue { return JSONValue([]byte(s)) }

func mv(t testing.TB, hexBody string) RawValue { return MsgpackValue(unhex(t, hexBody)) }

// parseAll parses buf with p and fails the test on error or leftovers.
func parseAll(t *testing.T, p Protocol, buf []byte) []Message {
	t.Helper()
	msgs, consumed, err := p.Parse(buf, 0)
	if err != nil {
		t.Fatalf("%s Parse(%q): %v", p.Name(), buf, err)
	}
	if consumed != len(buf) {
		t.Fatalf("%s Parse(%q): consumed %d of %d bytes", p.Name(), buf, consumed, len(buf))
	}
	return msgs
}

// checkRecordsAndSplits encodes want with p back to back and parses the
// whole back to want. Then it feeds that stream in two pieces split at
// every offset, buffering the unconsumed tail as a transport would: the
// first Parse must not fail or consume more than it was given (and, when
// atBoundary is set, must stop where atBoundary says a record ends), the
// second must consume the rest, and together they must give every message.
func checkRecordsAndSplits(t *testing.T, p Protocol, want []Message, atBoundary func(buf []byte, consumed int) bool) {
	t.Helper()
	var buf []byte
	for i := range want {
		var err error
		if buf, err = p.Append(buf, &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	assertMessages(t, parseAll(t, p, buf), want)
	for split := 0; split <= len(buf); split++ {
		var got []Message
		msgs, consumed, err := p.Parse(buf[:split], 1<<16)
		if err != nil || consumed > split {
			t.Fatalf("split %d: first Parse consumed %d: %v", split, consumed, err)
		}
		if atBoundary != nil && !atBoundary(buf, consumed) {
			t.Fatalf("split %d: consumed %d is not a record boundary", split, consumed)
		}
		got = append(got, msgs...)
		pending := append(append([]byte(nil), buf[consumed:split]...), buf[split:]...)
		msgs, consumed, err = p.Parse(pending, 1<<16)
		if err != nil || consumed != len(pending) {
			t.Fatalf("split %d: second Parse consumed %d of %d: %v", split, consumed, len(pending), err)
		}
		got = append(got, msgs...)
		if len(got) != len(want) {
			t.Fatalf("split %d: got %d messages, want %d", split, len(got), len(want))
		}
	}
}

// checkLimitIsTheRecordSize wants p to parse rec, one whole record, with a
// maximum message size of exactly len(rec), and to refuse it with
// ErrMessageTooLarge, consuming nothing, with one byte less.
func checkLimitIsTheRecordSize(t *testing.T, p Protocol, rec []byte) {
	t.Helper()
	msgs, consumed, err := p.Parse(rec, len(rec))
	if err != nil || consumed != len(rec) || len(msgs) != 1 {
		t.Fatalf("record of exactly the limit: %d msgs, consumed %d, err %v", len(msgs), consumed, err)
	}
	_, consumed, err = p.Parse(rec, len(rec)-1)
	if !errors.Is(err, ErrMessageTooLarge) || consumed != 0 {
		t.Fatalf("record one byte over: consumed %d, err %v; want ErrMessageTooLarge", consumed, err)
	}
}

// mustAppend encodes m with p and fails the test on error.
func mustAppend(t testing.TB, p Protocol, m *Message) []byte {
	t.Helper()
	out, err := p.Append(nil, m)
	if err != nil {
		t.Fatalf("%s Append(%s): %v", p.Name(), formatMessage(*m), err)
	}
	return out
}

// sampleMessages returns one or more messages of every type, with raw
// values in the given format, covering optional fields and headers.
func sampleMessages(t testing.TB, f Format) []Message {
	t.Helper()
	raw := func(s string) RawValue {
		if f == FormatJSON {
			return jv(s)
		}
		b, err := JSONToMsgpack(nil, []byte(s))
		if err != nil {
			t.Fatalf("JSONToMsgpack(%s): %v", s, err)
		}
		return MsgpackValue(b)
	}
	h := map[string]string{"b": "2", "a": "1 \"quoted\""}
	return []Message{
		{Type: Invocation, Target: "notify", Arguments: []RawValue{raw(`"x"`), raw(`1`)}},
		{Type: Invocation, InvocationID: "0", Target: "Echo", Arguments: []RawValue{raw(`"hi"`)}},
		{Type: Invocation, InvocationID: "12", Target: "Mixed", Headers: h, Arguments: []RawValue{
			raw(`{"nested":{"list":[1,-2,3.5,"ü€😀",null,true,false]},"big":9223372036854775807}`),
			raw(`[]`), raw(`{}`), raw(`null`), raw(`"\"esc\"\n\\"`), raw(`1e300`),
		}},
		{Type: Invocation, Target: "NoArgs"},
		{Type: Invocation, InvocationID: "3", Target: "Upload", Arguments: []RawValue{raw(`"a"`)}, StreamIDs: []string{"4", "5"}},
		{Type: StreamItem, InvocationID: "4", Item: raw(`{"n":1}`)},
		{Type: StreamItem, InvocationID: "4", Item: raw(`null`), Headers: map[string]string{"k": "v"}},
		{Type: Completion, InvocationID: "0", Result: raw(`"hi"`), HasResult: true},
		{Type: Completion, InvocationID: "1", Result: raw(`null`), HasResult: true},
		{Type: Completion, InvocationID: "2", Error: "boom"},
		{Type: Completion, InvocationID: "3"},
		{Type: Completion, InvocationID: "3", Headers: h},
		{Type: StreamInvocation, InvocationID: "5", Target: "Counter", Arguments: []RawValue{raw(`10`), raw(`500`)}},
		{Type: StreamInvocation, InvocationID: "6", Target: "Both", StreamIDs: []string{"7"}},
		{Type: CancelInvocation, InvocationID: "5"},
		{Type: CancelInvocation, InvocationID: "5", Headers: h},
		{Type: Ping},
		{Type: Close},
		{Type: Close, Error: "Connection closed with an error.", AllowReconnect: true},
		{Type: Close, AllowReconnect: true},
		{Type: Close, Error: "bye"},
		{Type: Ack, SequenceID: 2},
		{Type: Sequence, SequenceID: 3},
		{Type: Ack, SequenceID: 1 << 40},
	}
}

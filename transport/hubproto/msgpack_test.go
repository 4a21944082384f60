package hubproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// What the JS client's MessagePack protocol writes (signalr-protocol.md §6),
// plus encodings other clients may choose (wider integers, nil headers).
func TestMsgpackParseClientGoldens(t *testing.T) {
	tests := []struct {
		name string
		body string // hex, without the length prefix
		want Message
	}{
		{"invoke 5 elements", "95 01 80 a1 30 a4 45 63 68 6f 91 a2 68 69",
			Message{Type: Invocation, InvocationID: "0", Target: "Echo", Arguments: []RawValue{mv(t, "a2 68 69")}}},
		{"send 5 elements", "95 01 80 c0 a4 46 69 72 65 91 01",
			Message{Type: Invocation, Target: "Fire", Arguments: []RawValue{mv(t, "01")}}},
		{"upload 6 elements", "96 01 80 a1 33 a6 55 70 6c 6f 61 64 90 91 a1 34",
			Message{Type: Invocation, InvocationID: "3", Target: "Upload", StreamIDs: []string{"4"}}},
		{"6 elements with empty streamIds", "96 01 80 c0 a1 54 91 c3 90",
			Message{Type: Invocation, Target: "T", Arguments: []RawValue{mv(t, "c3")}}},
		{"6 elements with nil streamIds", "96 01 80 c0 a1 54 90 c0",
			Message{Type: Invocation, Target: "T"}},
		{"stream item", "94 02 80 a1 34 81 a1 61 92 01 02",
			Message{Type: StreamItem, InvocationID: "4", Item: mv(t, "81 a1 61 92 01 02")}},
		{"completion result", "95 03 80 a1 30 03 a2 68 69",
			Message{Type: Completion, InvocationID: "0", Result: mv(t, "a2 68 69"), HasResult: true}},
		{"completion nil result", "95 03 80 a1 30 03 c0",
			Message{Type: Completion, InvocationID: "0", Result: mv(t, "c0"), HasResult: true}},
		{"completion error", "95 03 80 a1 34 01 a4 62 6f 6f 6d",
			Message{Type: Completion, InvocationID: "4", Error: "boom"}},
		{"completion void", "94 03 80 a1 34 02",
			Message{Type: Completion, InvocationID: "4"}},
		{"stream invocation", "95 04 80 a1 32 a7 43 6f 75 6e 74 65 72 92 0a cd 01 f4",
			Message{Type: StreamInvocation, InvocationID: "2", Target: "Counter", Arguments: []RawValue{mv(t, "0a"), mv(t, "cd 01 f4")}}},
		{"cancel", "93 05 80 a1 32", Message{Type: CancelInvocation, InvocationID: "2"}},
		{"ping", "91 06", Message{Type: Ping}},
		{"close from JS client", "92 07 c0", Message{Type: Close}},
		{"close 1 element", "91 07", Message{Type: Close}},
		{"close allowReconnect", "93 07 a3 65 72 72 c3", Message{Type: Close, Error: "err", AllowReconnect: true}},
		{"close nil allowReconnect", "93 07 c0 c0", Message{Type: Close}},
		{"ack", "92 08 02", Message{Type: Ack, SequenceID: 2}},
		{"sequence", "92 09 03", Message{Type: Sequence, SequenceID: 3}},
		{"headers", "95 01 82 a1 61 a1 31 a1 62 a0 c0 a1 54 90",
			Message{Type: Invocation, Target: "T", Headers: map[string]string{"a": "1", "b": ""}}},
		{"nil headers", "95 01 c0 c0 a1 54 90", Message{Type: Invocation, Target: "T"}},
		{"wide integers", "92 cd 00 08 ce 00 01 00 00", Message{Type: Ack, SequenceID: 65536}},
		{"signed type", "91 d0 06", Message{Type: Ping}},
		{"str8 and array16", "95 01 de 00 00 d9 01 31 da 00 01 54 dc 00 01 d3 ff ff ff ff ff ff ff ff",
			Message{Type: Invocation, InvocationID: "1", Target: "T", Arguments: []RawValue{mv(t, "d3 ff ff ff ff ff ff ff ff")}}},
		{"extra trailing elements ignored", "97 01 80 c0 a1 54 90 90 81 a1 78 92 01 02",
			Message{Type: Invocation, Target: "T"}},
		{"ping with extra element", "92 06 a6 66 75 74 75 72 65", Message{Type: Ping}},
		{"empty invocation id means none", "95 01 80 a0 a1 54 90", Message{Type: Invocation, Target: "T"}},
		{"every raw kind", "95 01 80 c0 a1 54 9c c0 c2 ca 3f c0 00 00 cb 3f f8 00 00 00 00 00 00 c4 01 ff d6 ff 00 00 00 01 c7 01 05 aa d8 07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 e0 cf ff ff ff ff ff ff ff ff 80 90",
			Message{Type: Invocation, Target: "T", Arguments: []RawValue{
				mv(t, "c0"), mv(t, "c2"), mv(t, "ca 3f c0 00 00"), mv(t, "cb 3f f8 00 00 00 00 00 00"), mv(t, "c4 01 ff"),
				mv(t, "d6 ff 00 00 00 01"), mv(t, "c7 01 05 aa"), mv(t, "d8 07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
				mv(t, "e0"), mv(t, "cf ff ff ff ff ff ff ff ff"), mv(t, "80"), mv(t, "90")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseAll(t, MessagePack{}, frame(unhex(t, tt.body)))
			assertMessages(t, got, []Message{tt.want})
		})
	}
}

// What the server writes: ASP.NET's layouts (MessagePackHubProtocolWorker
// always writes 6-element invocations, with an empty streamIds array).
func TestMsgpackAppendGoldens(t *testing.T) {
	closeErr := "Connection closed with an error."
	tests := []struct {
		name string
		m    Message
		want string // framed, hex
	}{
		{"notify", Message{Type: Invocation, Target: "notify", Arguments: []RawValue{mv(t, "a1 78"), mv(t, "01")}},
			"10 96 01 80 c0 a6 6e 6f 74 69 66 79 92 a1 78 01 90"},
		{"client result request", Message{Type: Invocation, InvocationID: "s1", Target: "T"},
			"0a 96 01 80 a2 73 31 a1 54 90 90"},
		{"with stream ids", Message{Type: StreamInvocation, InvocationID: "1", Target: "T", StreamIDs: []string{"2"}},
			"0b 96 04 80 a1 31 a1 54 90 91 a1 32"},
		{"headers sorted", Message{Type: CancelInvocation, InvocationID: "1", Headers: map[string]string{"b": "2", "a": "1"}},
			"0d 93 05 82 a1 61 a1 31 a1 62 a1 32 a1 31"},
		{"stream item", Message{Type: StreamItem, InvocationID: "1", Item: mv(t, "92 01 02")},
			"08 94 02 80 a1 31 92 01 02"},
		{"stream item zero", Message{Type: StreamItem, InvocationID: "1"}, "06 94 02 80 a1 31 c0"},
		{"completion result", Message{Type: Completion, InvocationID: "0", Result: mv(t, "a2 68 69"), HasResult: true},
			"09 95 03 80 a1 30 03 a2 68 69"},
		{"completion error", Message{Type: Completion, InvocationID: "0", Error: "no"},
			"09 95 03 80 a1 30 01 a2 6e 6f"},
		{"completion void", Message{Type: Completion, InvocationID: "1"}, "06 94 03 80 a1 31 02"},
		{"ping", Message{Type: Ping}, "02 91 06"},
		{"close plain", Message{Type: Close}, "04 93 07 c0 c2"},
		{"close error reconnect", Message{Type: Close, Error: closeErr, AllowReconnect: true},
			"25 93 07 d9 20 " + hex.EncodeToString([]byte(closeErr)) + " c3"},
		{"ack", Message{Type: Ack, SequenceID: 2}, "03 92 08 02"},
		{"sequence large", Message{Type: Sequence, SequenceID: 1 << 32}, "0b 92 09 cf 00 00 00 01 00 00 00 00"},
		{"json args converted", Message{Type: Invocation, Target: "T", Arguments: []RawValue{jv(`{"a":[1,-1,1.5,"s",null,true]}`)}},
			"1b 96 01 80 c0 a1 54 91 81 a1 61 96 01 ff cb 3f f8 00 00 00 00 00 00 a1 73 c0 c3 90"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustAppend(t, MessagePack{}, &tt.m)
			if want := unhex(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("Append =\n % x\nwant\n % x", got, want)
			}
		})
	}
}

func TestMsgpackRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t, FormatMsgpack) {
		rec := mustAppend(t, MessagePack{}, &m)
		got := parseAll(t, MessagePack{}, rec)
		assertMessages(t, got, []Message{m})
	}
}

// Bodies of 127/128 and 16383/16384 bytes need 1/2 and 2/3 prefix bytes;
// the encoder must move the body when its first size guess is wrong.
func TestMsgpackPrefixSizes(t *testing.T) {
	for _, n := range []int{0, 1, 100, 110, 111, 112, 113, 120, 16360, 16370, 16380, 20000, 3 << 20} {
		m := Message{Type: Invocation, Target: "T", Arguments: []RawValue{MsgpackValue(mpAppendString(nil, strings.Repeat("x", n)))}}
		rec := mustAppend(t, MessagePack{}, &m)
		size, pre, err := readVarint(rec)
		if err != nil || pre+size != len(rec) || pre != varintLen(size) {
			t.Fatalf("n=%d: prefix says %d+%d, record is %d bytes (%v)", n, pre, size, len(rec), err)
		}
		assertMessages(t, parseAll(t, MessagePack{}, rec), []Message{m})
		// An underestimated prefix: JSON numbers grow when converted.
		args := "[" + strings.Repeat("1e5,", n/4) + "1]"
		viaFast, err := AppendInvocationMsgpack(nil, "T", []byte(args))
		if err != nil {
			t.Fatal(err)
		}
		size, pre, _ = readVarint(viaFast)
		if pre+size != len(viaFast) || pre != varintLen(size) {
			t.Fatalf("n=%d: fast path prefix says %d+%d, record is %d bytes", n, pre, size, len(viaFast))
		}
	}
}

func TestMsgpackMultipleRecordsAndSplits(t *testing.T) {
	checkRecordsAndSplits(t, MessagePack{}, sampleMessages(t, FormatMsgpack), nil)
}

func TestMsgpackParseDoesNotRetainInput(t *testing.T) {
	buf := frame(unhex(t, "95 01 80 c0 a1 54 92 81 a1 61 01 a1 62"))
	buf = append(buf, frame(unhex(t, "95 03 80 a1 31 03 92 01 02"))...)
	msgs := parseAll(t, MessagePack{}, buf)
	for i := range buf {
		buf[i] = 0xc1
	}
	assertMessages(t, msgs, []Message{
		{Type: Invocation, Target: "T", Arguments: []RawValue{mv(t, "81 a1 61 01"), mv(t, "a1 62")}},
		{Type: Completion, InvocationID: "1", Result: mv(t, "92 01 02"), HasResult: true},
	})
	_ = append(msgs[0].Arguments[0].Data, 0xff)
	if !bytes.Equal(msgs[0].Arguments[1].Data, []byte{0xa1, 0x62}) {
		t.Errorf("appending to argument 0 changed argument 1 to % x", msgs[0].Arguments[1].Data)
	}
}

func TestMsgpackMaxMessageSize(t *testing.T) {
	m := Message{Type: Invocation, Target: "T", Arguments: []RawValue{MsgpackValue(mpAppendString(nil, strings.Repeat("a", 200)))}}
	rec := mustAppend(t, MessagePack{}, &m)
	limit := len(rec) // the framed size, including the 2-byte prefix
	checkLimitIsTheRecordSize(t, MessagePack{}, rec)
	// The declared length alone is enough to reject it.
	if _, _, err := (MessagePack{}).Parse(rec[:2], limit-1); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("prefix only, over the limit: err %v; want ErrMessageTooLarge", err)
	}
	msgs, consumed, err := MessagePack{}.Parse(rec[:2], limit)
	if err != nil || consumed != 0 || len(msgs) != 0 {
		t.Errorf("prefix only, within the limit: %d msgs, consumed %d, err %v; want to wait", len(msgs), consumed, err)
	}
	ping := MessagePack{}.PingRecord()
	msgs, consumed, err = MessagePack{}.Parse(append(append([]byte{}, ping...), rec...), limit-1)
	if !errors.Is(err, ErrMessageTooLarge) || consumed != len(ping) || len(msgs) != 1 {
		t.Errorf("ping then big record: %d msgs, consumed %d, err %v", len(msgs), consumed, err)
	}
}

func TestMsgpackParseMalformed(t *testing.T) {
	deep := strings.Repeat("91 ", maxDepth+1) + "c0"
	tests := []struct{ name, body string }{
		{"empty body", ""},
		{"not an array", "06"},
		{"empty array", "90"},
		{"type not int", "91 a1 31"},
		{"type nil", "91 c0"},
		{"type float", "91 cb 40 18 00 00 00 00 00 00"},
		{"invocation 4 elements", "94 01 80 c0 a1 54"},
		{"headers not a map", "95 01 90 c0 a1 54 90"},
		{"header value int", "95 01 81 a1 61 01 c0 a1 54 90"},
		{"header key nil", "95 01 81 c0 a1 31 c0 a1 54 90"},
		{"invocation id int", "95 01 80 01 a1 54 90"},
		{"target nil", "95 01 80 c0 c0 90"},
		{"target bin", "95 01 80 c0 c4 01 54 90"},
		{"arguments not array", "95 01 80 c0 a1 54 80"},
		{"arguments truncated", "95 01 80 c0 a1 54 92 01"},
		{"stream id not string", "96 01 80 c0 a1 54 90 91 01"},
		{"stream invocation nil id", "95 04 80 c0 a1 54 90"},
		{"stream invocation empty id", "95 04 80 a0 a1 54 90"},
		{"invocation empty target", "95 01 80 c0 a0 90"},
		{"stream item empty id", "94 02 80 a0 01"},
		{"completion empty id", "94 03 80 a0 02"},
		{"cancel empty id", "93 05 80 a0"},
		{"stream item no item", "93 02 80 a1 31"},
		{"stream item nil id", "94 02 80 c0 01"},
		{"completion kind 4", "94 03 80 a1 31 04"},
		{"completion kind 3 no result", "94 03 80 a1 31 03"},
		{"completion kind 1 no error", "94 03 80 a1 31 01"},
		{"completion kind string", "94 03 80 a1 31 a1 32"},
		{"completion nil id", "94 03 80 c0 02"},
		{"completion error not string", "95 03 80 a1 31 01 01"},
		{"cancel no id", "92 05 80"},
		{"ack no sequence", "91 08"},
		{"ack sequence string", "92 08 a1 31"},
		{"ack sequence over int64", "92 08 cf ff ff ff ff ff ff ff ff"},
		{"close error int", "92 07 01"},
		{"close allowReconnect int", "93 07 c0 01"},
		{"trailing bytes", "91 06 00"},
		{"reserved byte c1", "95 01 80 c0 a1 54 91 c1"},
		{"string beyond data", "95 01 80 c0 a5 54 90"},
		{"array32 beyond data", "95 01 80 c0 a1 54 dd ff ff ff ff"},
		{"map32 beyond data", "95 01 df ff ff ff ff"},
		{"bin32 beyond data", "95 01 80 c0 a1 54 91 c6 ff ff ff ff"},
		{"ext32 beyond data", "95 01 80 c0 a1 54 91 c9 7f ff ff ff 01"},
		{"ext8 no type", "95 01 80 c0 a1 54 91 c7 00"},
		{"fixext truncated", "95 01 80 c0 a1 54 91 d8 01 00"},
		{"float64 truncated", "95 01 80 c0 a1 54 91 cb 00"},
		{"extra element truncated", "92 06 92 01"},
		{"nesting too deep", "95 01 80 c0 a1 54 91 " + deep},
	}
	ping := MessagePack{}.PingRecord()
	for _, tt := range tests {
		buf := append(append([]byte{}, ping...), frame(unhex(t, tt.body))...)
		buf = append(buf, ping...)
		msgs, consumed, err := MessagePack{}.Parse(buf, 0)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tt.name, err)
			continue
		}
		if consumed != len(ping) || len(msgs) != 1 {
			t.Errorf("%s: %d msgs, consumed %d; want the ping before the bad record", tt.name, len(msgs), consumed)
		}
	}
	if _, _, err := (MessagePack{}).Parse(unhex(t, "ff ff ff ff 0f 00"), 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("length prefix over 2GB: err = %v, want ErrMalformed", err)
	}
}

func TestMsgpackParseSkipsUnknownTypes(t *testing.T) {
	var buf []byte
	for _, body := range []string{"92 0a a1 78", "91 00", "91 ff", "91 cd 01 00", "91 06"} {
		buf = append(buf, frame(unhex(t, body))...)
	}
	assertMessages(t, parseAll(t, MessagePack{}, buf), []Message{{Type: Ping}})
}

func TestMsgpackAppendErrors(t *testing.T) {
	prefix := []byte("keep")
	for _, m := range []Message{
		{Type: 0},
		{Type: 10},
		{Type: Completion, InvocationID: "1", Error: "e", HasResult: true},
		{Type: Invocation, Target: "T", Arguments: []RawValue{jv(`{"bad"`)}},
		{Type: Invocation},
		{Type: StreamInvocation, Target: "T"},
		{Type: StreamItem},
		{Type: Completion},
		{Type: CancelInvocation},
	} {
		out, err := MessagePack{}.Append(prefix, &m)
		if err == nil || string(out) != "keep" {
			t.Errorf("Append(%s) = %q, %v; want dst unchanged and an error", formatMessage(m), out, err)
		}
	}
}

func TestMsgpackControlRecords(t *testing.T) {
	p := MessagePack{}
	if got := p.PingRecord(); !bytes.Equal(got, []byte{0x02, 0x91, 0x06}) {
		t.Errorf("PingRecord = % x, want 02 91 06", got)
	}
	_ = append(p.PingRecord(), 0xff)
	if got := p.PingRecord(); !bytes.Equal(got, []byte{0x02, 0x91, 0x06}) {
		t.Errorf("appending to PingRecord changed it: % x", got)
	}
	for _, tt := range []struct {
		err       string
		reconnect bool
	}{{"", false}, {"", true}, {"x", false}, {strings.Repeat("e", 40), true}, {strings.Repeat("e", 300), true}} {
		got := p.AppendClose([]byte{0xee}, tt.err, tt.reconnect)
		m := Message{Type: Close, Error: tt.err, AllowReconnect: tt.reconnect}
		if want := append([]byte{0xee}, mustAppend(t, p, &m)...); !bytes.Equal(got, want) {
			t.Errorf("AppendClose(%q, %v) = % x, want % x", tt.err, tt.reconnect, got, want)
		}
		assertMessages(t, parseAll(t, p, got[1:]), []Message{m})
	}
}

func TestAppendInvocationMsgpack(t *testing.T) {
	got, err := AppendInvocationMsgpack([]byte{0xaa}, "notify", []byte(` ["x", 1] `))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "aa 10 96 01 80 c0 a6 6e 6f 74 69 66 79 92 a1 78 01 90"); !bytes.Equal(got, want) {
		t.Errorf("AppendInvocationMsgpack = % x, want % x", got, want)
	}
	if got, err := AppendInvocationMsgpack(nil, "T", nil); err != nil || !bytes.Equal(got, unhex(t, "08 96 01 80 c0 a1 54 90 90")) {
		t.Errorf("AppendInvocationMsgpack with no args = % x, %v", got, err)
	}
	for _, bad := range []string{`{"a":1}`, `"x"`, `[1,`, `[1] [2]`, ` `} {
		out, err := AppendInvocationMsgpack([]byte{0xaa}, "T", []byte(bad))
		if !errors.Is(err, ErrMalformed) || !bytes.Equal(out, []byte{0xaa}) {
			t.Errorf("AppendInvocationMsgpack(%q) = % x, %v; want dst unchanged and ErrMalformed", bad, out, err)
		}
	}
	out, err := MessagePack{}.AppendInvocation(nil, "T", []byte(`[{"k":[true]}]`))
	if err != nil {
		t.Fatal(err)
	}
	assertMessages(t, parseAll(t, MessagePack{}, out),
		[]Message{{Type: Invocation, Target: "T", Arguments: []RawValue{mv(t, "81 a1 6b 91 c3")}}})
}

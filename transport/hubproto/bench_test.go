package hubproto

import (
	"bytes"
	"testing"
)

// benchArgs is a typical fan-out payload: a chat message object.
var benchArgs = []byte(`["room-42",{"id":1234567,"user":"alice","text":"Hello, world! \u00fc\ud83d\ude00","ts":1735689600123,"score":4.5,"tags":["a","b"],"reply":null,"edited":false}]`)

func BenchmarkAppendInvocationJSON(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchArgs)))
	for b.Loop() {
		buf = AppendInvocationJSON(buf[:0], "ReceiveMessage", benchArgs)
	}
}

func BenchmarkAppendInvocationMsgpack(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchArgs)))
	for b.Loop() {
		var err error
		if buf, err = AppendInvocationMsgpack(buf[:0], "ReceiveMessage", benchArgs); err != nil {
			b.Fatal(err)
		}
	}
}

// The general encoder with arguments already in the target format.
func BenchmarkAppendMessageJSON(b *testing.B) {
	m := Message{Type: Invocation, Target: "ReceiveMessage", Arguments: []RawValue{jv(`"room-42"`), jv(string(benchArgs[11 : len(benchArgs)-1]))}}
	benchAppend(b, JSON{}, &m)
}

func BenchmarkAppendMessageMsgpack(b *testing.B) {
	args, _ := JSONToMsgpack(nil, benchArgs)
	msgs := parseAllB(b, MessagePack{}, invocationRecordMsgpack(b, args))
	benchAppend(b, MessagePack{}, &msgs[0])
}

// Cross-protocol: a MessagePack client's message encoded for JSON clients.
func BenchmarkAppendMsgpackMessageAsJSON(b *testing.B) {
	args, _ := JSONToMsgpack(nil, benchArgs)
	m := parseAllB(b, MessagePack{}, invocationRecordMsgpack(b, args))[0]
	benchAppend(b, JSON{}, &m)
}

// What a JSON client sends: an invocation with an id, "type" last.
var benchJSONRecord = []byte(`{"target":"SendMessage","arguments":["room-42",{"text":"Hello, world!","ts":1735689600123,"tags":["a","b"]}],"invocationId":"17","type":1}` + rs)

func BenchmarkParseJSON(b *testing.B) {
	benchParse(b, JSON{}, benchJSONRecord, 1)
}

// BenchmarkParseJSONFrame: a frame of 12 records, as a client reads
// coalesced deliveries or a server pipelined invocations.
func BenchmarkParseJSONFrame(b *testing.B) {
	benchParse(b, JSON{}, bytes.Repeat(benchJSONRecord, 12), 12)
}

func BenchmarkParseMessagePack(b *testing.B) {
	msgs := parseAllB(b, JSON{}, benchJSONRecord)
	rec, err := MessagePack{}.Append(nil, &msgs[0])
	if err != nil {
		b.Fatal(err)
	}
	benchParse(b, MessagePack{}, rec, 1)
}

func BenchmarkParsePingJSON(b *testing.B) {
	ping := JSON{}.PingRecord()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := (JSON{}).Parse(ping, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMsgpackToJSON(b *testing.B) {
	mp, _ := JSONToMsgpack(nil, benchArgs)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(mp)))
	for b.Loop() {
		buf, _ = MsgpackToJSON(buf[:0], mp)
	}
}

// benchAppend measures p encoding m into a reused buffer.
func benchAppend(b *testing.B, p Protocol, m *Message) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = p.Append(buf[:0], m)
	}
}

// benchParse measures p parsing frame, which holds n records, with a
// maximum message size of 32 KiB.
func benchParse(b *testing.B, p Protocol, frame []byte, n int) {
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		msgs, _, err := p.Parse(frame, 32<<10)
		if err != nil || len(msgs) != n {
			b.Fatal(err)
		}
	}
}

func parseAllB(b *testing.B, p Protocol, buf []byte) []Message {
	b.Helper()
	msgs, n, err := p.Parse(buf, 0)
	if err != nil || n != len(buf) || len(msgs) == 0 {
		b.Fatalf("Parse: %d msgs, %d/%d bytes, %v", len(msgs), n, len(buf), err)
	}
	return msgs
}

// invocationRecordMsgpack frames an Invocation whose arguments array is
// the given MessagePack array.
func invocationRecordMsgpack(b *testing.B, argsArray []byte) []byte {
	b.Helper()
	body := append([]byte{0x95, 0x01, 0x80, 0xc0}, mpAppendString(nil, "ReceiveMessage")...)
	return frame(append(body, argsArray...))
}

package hubproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// What the real JS client sends (signalr-protocol.md §3, observed), and
// what it would send for the other message types (its property order).
func TestJSONParseClientGoldens(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"invoke", `{"target":"Echo","arguments":["hi"],"invocationId":"0","type":1}`,
			Message{Type: Invocation, InvocationID: "0", Target: "Echo", Arguments: []RawValue{jv(`"hi"`)}}},
		{"send", `{"target":"Fire","arguments":[1],"type":1}`,
			Message{Type: Invocation, Target: "Fire", Arguments: []RawValue{jv(`1`)}}},
		{"upload", `{"target":"Upload","arguments":[],"invocationId":"3","streamIds":["4"],"type":1}`,
			Message{Type: Invocation, InvocationID: "3", Target: "Upload", StreamIDs: []string{"4"}}},
		{"stream item", `{"invocationId":"4","item":{"a":[1,2]},"type":2}`,
			Message{Type: StreamItem, InvocationID: "4", Item: jv(`{"a":[1,2]}`)}},
		{"completion result", `{"invocationId":"0","result":"hi","type":3}`,
			Message{Type: Completion, InvocationID: "0", Result: jv(`"hi"`), HasResult: true}},
		{"completion error", `{"error":"boom","invocationId":"4","type":3}`,
			Message{Type: Completion, InvocationID: "4", Error: "boom"}},
		{"completion void", `{"invocationId":"4","type":3}`,
			Message{Type: Completion, InvocationID: "4"}},
		{"completion null result", `{"invocationId":"4","result":null,"type":3}`,
			Message{Type: Completion, InvocationID: "4", Result: jv(`null`), HasResult: true}},
		{"stream invocation", `{"target":"Counter","arguments":[10,500],"invocationId":"2","type":4}`,
			Message{Type: StreamInvocation, InvocationID: "2", Target: "Counter", Arguments: []RawValue{jv(`10`), jv(`500`)}}},
		{"cancel", `{"invocationId":"2","type":5}`, Message{Type: CancelInvocation, InvocationID: "2"}},
		{"ping", `{"type":6}`, Message{Type: Ping}},
		{"close", `{"type":7}`, Message{Type: Close}},
		{"close with error", `{"type":7,"error":"Connection closed with an error.","allowReconnect":true}`,
			Message{Type: Close, Error: "Connection closed with an error.", AllowReconnect: true}},
		{"ack", `{"type":8,"sequenceId":2}`, Message{Type: Ack, SequenceID: 2}},
		{"sequence", `{"type":9,"sequenceId":3}`, Message{Type: Sequence, SequenceID: 3}},
		{"headers", `{"type":1,"headers":{"a":"1","b":"x\"y"},"target":"T","arguments":[]}`,
			Message{Type: Invocation, Target: "T", Headers: map[string]string{"a": "1", "b": `x"y`}}},
		{"whitespace and unknown properties",
			" {\n\t\"extra\" : {\"deep\":[1,{\"x\":null}]} , \"target\" : \"T\" , \"arguments\" : [ 1 , \"a\" , [ ] ] , \"type\" : 1 } ",
			Message{Type: Invocation, Target: "T", Arguments: []RawValue{jv(`1`), jv(`"a"`), jv(`[ ]`)}}},
		{"escaped property names", `{"t\u0061rget":"T","arguments":[],"\u0074ype":1}`,
			Message{Type: Invocation, Target: "T"}},
		{"escaped strings", `{"target":"\u00fc\ud83d\ude00\n","arguments":["\u00fc"],"invocationId":"\"1\"","type":1}`,
			Message{Type: Invocation, InvocationID: `"1"`, Target: "ü😀\n", Arguments: []RawValue{jv(`"\u00fc"`)}}},
		{"null optional properties", `{"target":"T","arguments":[],"invocationId":null,"streamIds":null,"headers":null,"type":1}`,
			Message{Type: Invocation, Target: "T"}},
		{"irrelevant properties dropped", `{"type":6,"target":"x","invocationId":"1","headers":{"a":"b"}}`,
			Message{Type: Ping}},
		{"duplicate property last wins", `{"type":5,"invocationId":"1","invocationId":"2"}`,
			Message{Type: CancelInvocation, InvocationID: "2"}},
		{"empty invocation id means none", `{"type":1,"invocationId":"","target":"T","arguments":[]}`,
			Message{Type: Invocation, Target: "T"}},
		{"close allowReconnect null", `{"type":7,"allowReconnect":null,"error":null}`, Message{Type: Close}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseAll(t, JSON{}, []byte(tt.in+rs))
			assertMessages(t, got, []Message{tt.want})
		})
	}
}

// What the server sends (signalr-protocol.md §3 examples) and ASP.NET's
// property order for the rest.
func TestJSONAppendGoldens(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"completion", Message{Type: Completion, InvocationID: "0", Result: jv(`"hi"`), HasResult: true},
			`{"type":3,"invocationId":"0","result":"hi"}`},
		{"notify", Message{Type: Invocation, Target: "notify", Arguments: []RawValue{jv(`"x"`), jv(`1`)}},
			`{"type":1,"target":"notify","arguments":["x",1]}`},
		{"close", Message{Type: Close, Error: "Connection closed with an error.", AllowReconnect: true},
			`{"type":7,"error":"Connection closed with an error.","allowReconnect":true}`},
		{"client result request", Message{Type: Invocation, InvocationID: "s1", Target: "GetName"},
			`{"type":1,"invocationId":"s1","target":"GetName","arguments":[]}`},
		{"headers sorted", Message{Type: Invocation, Target: "t", Headers: map[string]string{"z": "1", "a": "2", "m": "3"}},
			`{"type":1,"headers":{"a":"2","m":"3","z":"1"},"target":"t","arguments":[]}`},
		{"stream ids", Message{Type: StreamInvocation, InvocationID: "1", Target: "t", StreamIDs: []string{"2", "3"}},
			`{"type":4,"invocationId":"1","target":"t","arguments":[],"streamIds":["2","3"]}`},
		{"stream item", Message{Type: StreamItem, InvocationID: "1", Item: jv(`[1,2]`)},
			`{"type":2,"invocationId":"1","item":[1,2]}`},
		{"stream item zero", Message{Type: StreamItem, InvocationID: "1"},
			`{"type":2,"invocationId":"1","item":null}`},
		{"completion void", Message{Type: Completion, InvocationID: "1"}, `{"type":3,"invocationId":"1"}`},
		{"completion error", Message{Type: Completion, InvocationID: "1", Error: "no"},
			`{"type":3,"invocationId":"1","error":"no"}`},
		{"completion zero result", Message{Type: Completion, InvocationID: "1", HasResult: true},
			`{"type":3,"invocationId":"1","result":null}`},
		{"cancel", Message{Type: CancelInvocation, InvocationID: "1"}, `{"type":5,"invocationId":"1"}`},
		{"ping", Message{Type: Ping}, `{"type":6}`},
		{"close plain", Message{Type: Close}, `{"type":7}`},
		{"close reconnect", Message{Type: Close, AllowReconnect: true}, `{"type":7,"allowReconnect":true}`},
		{"ack", Message{Type: Ack, SequenceID: 2}, `{"type":8,"sequenceId":2}`},
		{"sequence", Message{Type: Sequence, SequenceID: 3}, `{"type":9,"sequenceId":3}`},
		{"escapes", Message{Type: Invocation, Target: "a\"b\\c\n\x01\u2028ü\xff", Arguments: []RawValue{jv(`"ü"`)}},
			`{"type":1,"target":"a\"b\\c\n\u0001` + "\u2028ü\ufffd" + `","arguments":["ü"]}`},
		{"msgpack args converted", Message{Type: Invocation, Target: "t", Arguments: []RawValue{mv(t, "81 a1 61 c4 02 01 02")}},
			`{"type":1,"target":"t","arguments":[{"a":"AQI="}]}`},
		{"headers ignored on ping", Message{Type: Ping, Headers: map[string]string{"a": "b"}}, `{"type":6}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustAppend(t, JSON{}, &tt.m)
			if string(got) != tt.want+rs {
				t.Errorf("Append =\n %q\nwant\n %q", got, tt.want+rs)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t, FormatJSON) {
		rec := mustAppend(t, JSON{}, &m)
		if !bytes.HasSuffix(rec, []byte(rs)) || bytes.Count(rec, []byte(rs)) != 1 {
			t.Fatalf("record %q is not one 0x1E-terminated record", rec)
		}
		got := parseAll(t, JSON{}, rec)
		assertMessages(t, got, []Message{m})
	}
}

func TestJSONMultipleRecordsAndSplits(t *testing.T) {
	checkRecordsAndSplits(t, JSON{}, sampleMessages(t, FormatJSON), func(buf []byte, consumed int) bool {
		return consumed == 0 || buf[consumed-1] == 0x1e // a record ends with its separator
	})
}

func TestJSONParseDoesNotRetainInput(t *testing.T) {
	buf := []byte(`{"type":1,"target":"T","arguments":[{"a":1},"b"]}` + rs +
		`{"type":2,"invocationId":"1","item":[7]}` + rs + `{"type":3,"invocationId":"1","result":"r"}` + rs)
	msgs := parseAll(t, JSON{}, buf)
	for i := range buf {
		buf[i] = 'X'
	}
	want := []Message{
		{Type: Invocation, Target: "T", Arguments: []RawValue{jv(`{"a":1}`), jv(`"b"`)}},
		{Type: StreamItem, InvocationID: "1", Item: jv(`[7]`)},
		{Type: Completion, InvocationID: "1", Result: jv(`"r"`), HasResult: true},
	}
	assertMessages(t, msgs, want)
	// Arguments share storage but must not overlap through append.
	a0 := append(msgs[0].Arguments[0].Data, "!!"...)
	_ = a0
	if string(msgs[0].Arguments[1].Data) != `"b"` {
		t.Errorf("appending to argument 0 changed argument 1 to %q", msgs[0].Arguments[1].Data)
	}
}

func TestJSONMaxMessageSize(t *testing.T) {
	rec := []byte(`{"type":1,"target":"T","arguments":["` + strings.Repeat("a", 100) + `"]}` + rs)
	limit := len(rec) // the framed size, including 0x1E
	checkLimitIsTheRecordSize(t, JSON{}, rec)
	// A partial record already longer than the limit fails early, without
	// waiting for the separator; a shorter one waits.
	_, _, err := JSON{}.Parse(rec[:limit], limit-1)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("partial record over the limit: err %v; want ErrMessageTooLarge", err)
	}
	msgs, consumed, err := JSON{}.Parse(rec[:limit-2], limit-1)
	if err != nil || consumed != 0 || len(msgs) != 0 {
		t.Errorf("partial record under the limit: %d msgs, consumed %d, err %v; want to wait", len(msgs), consumed, err)
	}
	// The limit applies per record: a good record before a big one is
	// returned with the error.
	small := []byte(`{"type":6}` + rs)
	msgs, consumed, err = JSON{}.Parse(append(append([]byte{}, small...), rec...), limit-1)
	if !errors.Is(err, ErrMessageTooLarge) || consumed != len(small) || len(msgs) != 1 || msgs[0].Type != Ping {
		t.Errorf("ping then big record: %d msgs, consumed %d, err %v", len(msgs), consumed, err)
	}
}

func TestJSONParseMalformed(t *testing.T) {
	tests := []string{
		``,
		` `,
		`null`,
		`[]`,
		`"x"`,
		`{`,
		`{}`,
		`{"type":"1"}`,
		`{"type":1.0}`,
		`{"type":1e0}`,
		`{"type":null}`,
		`{"type":99999999999999999999}`,
		`{"type":6,}`,
		`{"type":6 "x":1}`,
		`{type:6}`,
		`{'type':6}`,
		`{"type":6}{"type":6}`,
		`{"type":6} x`,
		`{"type":1,"arguments":[]}`,
		`{"type":1,"target":"T"}`,
		`{"type":1,"target":"T","arguments":{}}`,
		`{"type":1,"target":"T","arguments":null}`,
		`{"type":1,"target":1,"arguments":[]}`,
		`{"type":1,"target":"T","arguments":[1,]}`,
		`{"type":1,"target":"T","arguments":[01]}`,
		`{"type":1,"target":"T","arguments":[-]}`,
		`{"type":1,"target":"T","arguments":[1.]}`,
		`{"type":1,"target":"T","arguments":[1e]}`,
		`{"type":1,"target":"T","arguments":[tru]}`,
		`{"type":1,"target":"T","arguments":[NaN]}`,
		`{"type":1,"target":"T","arguments":["\x"]}`,
		`{"type":1,"target":"T","arguments":["\u12"]}`,
		"{\"type\":1,\"target\":\"T\",\"arguments\":[\"a\nb\"]}",
		"{\"type\":1,\"target\":\"T\\xff\",\"arguments\":[]}",
		"{\"type\":1,\"target\":\"T\",\"arguments\":[\"\xc3\"]}",
		`{"type":1,"target":"T","arguments":[],"streamIds":[1]}`,
		`{"type":1,"target":"T","arguments":[],"streamIds":"1"}`,
		`{"type":1,"target":"T","arguments":[],"headers":{"a":1}}`,
		`{"type":1,"target":"T","arguments":[],"headers":[]}`,
		`{"type":2,"item":1}`,
		`{"type":2,"invocationId":"1"}`,
		`{"type":3}`,
		`{"type":3,"invocationId":null}`,
		`{"type":3,"invocationId":""}`,
		`{"type":2,"invocationId":"","item":1}`,
		`{"type":5,"invocationId":""}`,
		`{"type":4,"invocationId":"","target":"T","arguments":[]}`,
		`{"type":4,"invocationId":"1","target":"","arguments":[]}`,
		`{"type":1,"target":"","arguments":[]}`,
		`{"type":1,"target":null,"arguments":[]}`,
		`{"type":3,"invocationId":"1","result":1,"error":"x"}`,
		`{"type":3,"invocationId":"1","result":}`,
		`{"type":4,"target":"T","arguments":[]}`,
		`{"type":5}`,
		`{"type":7,"allowReconnect":"yes"}`,
		`{"type":7,"error":1}`,
		`{"type":8}`,
		`{"type":9,"sequenceId":"3"}`,
		`{"type":8,"sequenceId":1.5}`,
		`{"type":6,"x":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`,
	}
	for _, in := range tests {
		good := `{"type":6}` + rs
		buf := []byte(good + in + rs + good)
		msgs, consumed, err := JSON{}.Parse(buf, 0)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q): err = %v, want ErrMalformed", in, err)
			continue
		}
		if consumed != len(good) || len(msgs) != 1 {
			t.Errorf("Parse(%q): %d msgs, consumed %d; want the ping before the bad record", in, len(msgs), consumed)
		}
	}
}

func TestJSONParseSkipsUnknownTypes(t *testing.T) {
	buf := []byte(`{"type":10,"anything":[1]}` + rs + `{"type":0}` + rs + `{"type":-3}` + rs + `{"type":6}` + rs)
	got := parseAll(t, JSON{}, buf)
	assertMessages(t, got, []Message{{Type: Ping}})
}

func TestJSONAppendErrors(t *testing.T) {
	prefix := []byte("keep")
	for _, m := range []Message{
		{Type: 0},
		{Type: 10},
		{Type: Completion, InvocationID: "1", Error: "e", HasResult: true},
		{Type: Invocation},
		{Type: StreamInvocation, Target: "T"},
		{Type: StreamInvocation, InvocationID: "1"},
		{Type: StreamItem},
		{Type: Completion},
		{Type: CancelInvocation},
	} {
		out, err := JSON{}.Append(prefix, &m)
		if !errors.Is(err, ErrInvalidMessage) || string(out) != "keep" {
			t.Errorf("Append(%s) = %q, %v; want dst unchanged and ErrInvalidMessage", formatMessage(m), out, err)
		}
	}
	m := Message{Type: Invocation, Target: "t", Arguments: []RawValue{mv(t, "d4 05 00")}} // ext type 5
	if out, err := (JSON{}).Append(prefix, &m); !errors.Is(err, ErrUnsupportedValue) || string(out) != "keep" {
		t.Errorf("Append with unconvertible argument = %q, %v; want ErrUnsupportedValue", out, err)
	}
}

func TestJSONControlRecords(t *testing.T) {
	p := JSON{}
	if got := p.PingRecord(); string(got) != `{"type":6}`+rs {
		t.Errorf("PingRecord = %q", got)
	}
	if got := append(p.PingRecord(), 'x'); string(p.PingRecord()) != `{"type":6}`+rs || len(got) != 12 {
		t.Errorf("appending to PingRecord changed it: %q", p.PingRecord())
	}
	tests := []struct {
		err       string
		reconnect bool
		want      string
	}{
		{"", false, `{"type":7}`},
		{"", true, `{"type":7,"allowReconnect":true}`},
		{"Connection closed with an error.", true, `{"type":7,"error":"Connection closed with an error.","allowReconnect":true}`},
		{"bad \"x\"", false, `{"type":7,"error":"bad \"x\""}`},
	}
	for _, tt := range tests {
		got := p.AppendClose(nil, tt.err, tt.reconnect)
		if string(got) != tt.want+rs {
			t.Errorf("AppendClose(%q, %v) = %q, want %q", tt.err, tt.reconnect, got, tt.want+rs)
		}
		m := Message{Type: Close, Error: tt.err, AllowReconnect: tt.reconnect}
		if viaAppend := mustAppend(t, p, &m); !bytes.Equal(viaAppend, got) {
			t.Errorf("Append(Close) = %q, AppendClose = %q", viaAppend, got)
		}
	}
}

func TestAppendInvocationJSON(t *testing.T) {
	got := AppendInvocationJSON([]byte("prev"+rs), "notify", []byte(`["x",1]`))
	want := "prev" + rs + `{"type":1,"target":"notify","arguments":["x",1]}` + rs
	if string(got) != want {
		t.Errorf("AppendInvocationJSON = %q, want %q", got, want)
	}
	noArgs := AppendInvocationJSON(nil, "t\"q", nil)
	if string(noArgs) != `{"type":1,"target":"t\"q","arguments":[]}`+rs {
		t.Errorf("AppendInvocationJSON with no args = %q", noArgs)
	}
	msgs := parseAll(t, JSON{}, noArgs)
	assertMessages(t, msgs, []Message{{Type: Invocation, Target: `t"q`}})
	out, err := JSON{}.AppendInvocation(nil, "notify", []byte(`[{"a":1}]`))
	if err != nil {
		t.Fatal(err)
	}
	assertMessages(t, parseAll(t, JSON{}, out),
		[]Message{{Type: Invocation, Target: "notify", Arguments: []RawValue{jv(`{"a":1}`)}}})
}

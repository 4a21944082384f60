package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestMsgpackToJSONForm(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"c4 02 01 02", `"AQI="`},                                             // bin [1,2]
		{"d6 ff 00 00 00 01", `"1970-01-01T00:00:01Z"`},                       // timestamp 32
		{"d7 ff 00 00 00 04 00 00 00 01", `"1970-01-01T00:00:01.000000001Z"`}, // timestamp 64
		{"c7 0c ff 00 00 00 00 ff ff ff ff ff ff ff ff", `"1969-12-31T23:59:59Z"`},
		{"d4 05 2a", `{"type":5,"data":"Kg=="}`},            // a user extension
		{"c7 03 f6 01 02 03", `{"type":-10,"data":"AQID"}`}, // ext8, negative type
		{"c7 03 ff 00 00 00", `{"type":-1,"data":"AAAA"}`},  // a timestamp of 3 bytes
		{"d7 ff ff ff ff ff 00 00 00 00", `{"type":-1,"data":"/////wAAAAA="}`},
		{"cb 7f f8 00 00 00 00 00 01", `null`}, // NaN
		{"cb 7f f0 00 00 00 00 00 00", `null`}, // +Inf
		{"ca ff 80 00 00", `null`},             // -Inf float32
		{"82 01 a1 61 d0 fe a1 62", `{"1":"a","-2":"b"}`},
		{"83 c3 01 c0 02 cb 3f f8 00 00 00 00 00 00 03", `{"true":1,"null":2,"1.5":3}`},
		{"81 92 01 a1 78 01", `{"[1,\"x\"]":1}`},                   // array key
		{"81 81 a1 6b 01 02", `{"{\"k\":1}":2}`},                   // map key
		{"81 c4 01 ff a1 76", `{"/w==":"v"}`},                      // bin key
		{"81 d6 ff 00 00 00 00 01", `{"1970-01-01T00:00:00Z":1}`},  // timestamp key
		{"81 d4 05 2a 01", `{"{\"type\":5,\"data\":\"Kg==\"}":1}`}, // ext key
		{"93 91 c4 00 81 a1 6d d4 07 00 a2 68 c3", `[[""],{"m":{"type":7,"data":"AA=="}},` + "\"h\ufffd\"]"},
	} {
		got, err := MsgpackToJSONForm([]byte("pre:"), unhex(t, c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(got) != "pre:"+c.want {
			t.Errorf("%s: got %s, want pre:%s", c.in, got, c.want)
		}
		if !json.Valid(got[4:]) {
			t.Errorf("%s: %s is not valid JSON", c.in, got[4:])
		}
	}
	for _, in := range []string{"", "c1", "c4 05 01", "92 01", "01 02", "d4 05"} {
		got, err := MsgpackToJSONForm([]byte("keep"), unhex(t, in))
		if !errors.Is(err, ErrMalformed) || string(got) != "keep" {
			t.Errorf("%q: got %q, %v; want ErrMalformed and dst unchanged", in, got, err)
		}
	}
	deep := append(bytes.Repeat([]byte{0x81, 0x91}, 300), 0x01)
	if _, err := MsgpackToJSONForm(nil, deep); !errors.Is(err, ErrMalformed) {
		t.Errorf("deep key nesting: %v, want ErrMalformed", err)
	}
}

func TestValidateMsgpackArray(t *testing.T) {
	for _, ok := range []string{"90", "91 c0", "93 c4 02 01 02 d6 ff 00 00 00 01 81 01 a1 61", "dc 00 01 d4 05 2a"} {
		if err := ValidateMsgpackArray(unhex(t, ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, 300), 0x01)
	for _, bad := range [][]byte{nil, unhex(t, "01"), unhex(t, "81 01 02"), unhex(t, "92 01"), unhex(t, "91 01 02"),
		unhex(t, "91 c1"), unhex(t, "dd ff ff ff ff"), deep} {
		if err := ValidateMsgpackArray(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v, want ErrMalformed", bad, err)
		}
	}
}

// TestAppendInvocationArgs checks that a MessagePack recipient gets the
// stored MessagePack arguments byte for byte, a JSON recipient the JSON
// arguments, and that without MessagePack arguments the JSON ones are
// converted as before.
func TestAppendInvocationArgs(t *testing.T) {
	args := unhex(t, "95 c4 02 01 02 d6 ff 00 00 00 01 82 01 a1 61 02 a1 62 cb 7f f8 00 00 00 00 00 01 d4 05 2a")
	rec, err := AppendInvocationArgs(MessagePack{}, []byte("x"), "recv", []byte(`["ignored"]`), args)
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != 'x' {
		t.Fatalf("dst prefix lost: % x", rec)
	}
	m := parseOne(t, MessagePack{}, rec[1:])
	if m.Type != Invocation || m.Target != "recv" || m.InvocationID != "" || len(m.Arguments) != 5 {
		t.Fatalf("parsed %s", formatMessage(m))
	}
	if got := AppendMsgpackArray(nil, m.Arguments); !bytes.Equal(got, args) {
		t.Errorf("arguments: got % x, want % x", got, args)
	}
	rec, err = AppendInvocationArgs(JSON{}, nil, "recv", []byte(`[1,"a"]`), args)
	if err != nil || string(rec) != `{"type":1,"target":"recv","arguments":[1,"a"]}`+rs {
		t.Errorf("JSON: %q, %v", rec, err)
	}
	rec, err = AppendInvocationArgs(MessagePack{}, nil, "recv", []byte(`[1,"a"]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	m = parseOne(t, MessagePack{}, rec)
	if got := AppendMsgpackArray(nil, m.Arguments); !bytes.Equal(got, unhex(t, "92 01 a1 61")) {
		t.Errorf("converted arguments: % x", got)
	}
}

// FuzzMsgpackToJSONForm checks that every well-formed value has a JSON form
// that is valid JSON, and that no input panics.
func FuzzMsgpackToJSONForm(f *testing.F) {
	for _, s := range []string{"c4 02 01 02", "d6 ff 00 00 00 01", "81 92 01 a1 78 01", "81 d4 05 2a 01",
		"93 91 c4 00 81 a1 6d d4 07 00 a2 68 c3", "cb 7f f8 00 00 00 00 00 01", "c7 03 ff 00 00 00", "82 01 a1 61 d0 fe a1 62"} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := MsgpackToJSONForm(nil, in)
		r := mpReader{buf: in}
		_, skipErr := r.skipValue(0)
		wellFormed := skipErr == nil && r.pos == len(in)
		if wellFormed != (err == nil) {
			t.Fatalf("% x: well-formed %v (%v) but conversion error %v", in, wellFormed, skipErr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("% x: %v, want ErrMalformed", in, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("% x: invalid JSON %s", in, out)
		}
		r = mpReader{buf: in}
		if _, err := r.skipValue(1); err != nil {
			return // nested as deep as allowed: one level more is too deep
		}
		arr := append(mpAppendArrayHeader(nil, 1), in...)
		if err := ValidateMsgpackArray(arr); err != nil {
			t.Fatalf("% x in an array: %v", in, err)
		}
	})
}

// BenchmarkInvocationArgs is the per-message encoding the dispatcher does
// once per protocol: a MessagePack record from JSON arguments (converted)
// or from stored MessagePack arguments (copied), and the JSON form of
// MessagePack arguments (done once per send, at the edge).
func BenchmarkInvocationArgs(b *testing.B) {
	text := bytes.Repeat([]byte("x"), 190)
	argsJSON := append(append([]byte(`["`), text...), `",1.5,{"k":[1,2,3]}]`...)
	argsMsgpack := append(append([]byte{0x93, 0xd9, 190}, text...),
		0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x81, 0xa1, 'k', 0x93, 1, 2, 3)
	buf := make([]byte, 0, 512)
	b.Run("msgpack-from-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := AppendInvocationArgs(MessagePack{}, buf[:0], "m", argsJSON, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack-as-sent", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := AppendInvocationArgs(MessagePack{}, buf[:0], "m", argsJSON, argsMsgpack); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-form", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := MsgpackToJSONForm(buf[:0], argsMsgpack); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// Seed records for the fuzz targets; with plain `go test` the targets run
// on these seeds only.
var jsonSeeds = []string{
	`{"target":"Echo","arguments":["hi"],"invocationId":"0","type":1}` + rs,
	`{"target":"Fire","arguments":[1],"type":1}` + rs,
	`{"type":6}` + rs + `{"type":7}` + rs + `{"type":8,"sequenceId":2}` + rs + `{"type":9,"sequenceId":3}` + rs,
	`{"type":3,"invocationId":"0","result":"hi"}` + rs,
	`{"type":7,"error":"Connection closed with an error.","allowReconnect":true}` + rs,
	`{"type":1,"headers":{"a":"b"},"target":"T","arguments":[{"x":[1.5e3,-0,"\u00fc\ud83d\ude00"]},null,true],"streamIds":["1"]}` + rs,
	`{"invocationId":"4","item":{"a":[1,2]},"type":2}` + rs + `{"invocationId":"4","type":3}` + rs,
	`{"target":"Counter","arguments":[10],"invocationId":"2","type":4}` + rs + `{"invocationId":"2","type":5}` + rs,
	`{"type":3,"invocationId":"1","error":"x","result":1}` + rs,
	`{"type":99}` + rs + `{"type":6}`,
	`{"type":1,"target":"T","arguments":[18446744073709551616,1e400,"\ud800"]}` + rs,
	`{"type":1,"target":"T","arguments":[` + rs,
	"\x1e\x1e",
	``,
}

var msgpackSeeds = []string{
	"0e 95 01 80 a1 30 a4 45 63 68 6f 91 a2 68 69",
	"0b 95 01 80 c0 a4 46 69 72 65 91 01",
	"10 96 01 80 a1 33 a6 55 70 6c 6f 61 64 90 91 a1 34",
	"09 95 03 80 a1 30 03 a2 68 69 06 94 03 80 a1 34 02",
	"02 91 06 03 92 07 c0 03 92 08 02 03 92 09 03",
	"07 93 07 a3 65 72 72 c3",
	"0b 94 02 80 a1 34 81 a1 61 92 01 02",
	"0d 95 01 80 c0 a1 54 93 ca 3d cc cc cd c4 01 ff d6 ff 00 00 00 01",
	"0c 95 01 80 c0 a1 54 91 81 01 cf ff ff ff ff",
	"0a 95 01 80 c0 a1 54 91 81 91 01 01",
	"07 95 01 80 c0 a1 54 91",
	"ff ff ff ff 0f",
	"00",
}

func addJSONSeeds(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s), uint16(0))
		f.Add([]byte(s), uint16(40))
	}
	var all []byte
	for _, m := range sampleMessages(f, FormatJSON) {
		all, _ = JSON{}.Append(all, &m)
	}
	f.Add(all, uint16(0))
}

func addMsgpackSeeds(f *testing.F) {
	for _, s := range msgpackSeeds {
		f.Add(unhex(f, s), uint16(0))
		f.Add(unhex(f, s), uint16(12))
	}
	var all []byte
	for _, m := range sampleMessages(f, FormatMsgpack) {
		all, _ = MessagePack{}.Append(all, &m)
	}
	f.Add(all, uint16(0))
}

// checkParse runs the properties shared by both protocols: no panic, a sane
// consumed count, sentinel errors, and re-encoding stability.
func checkParse(t *testing.T, p, other Protocol, buf []byte, limit int) {
	msgs, consumed, err := p.Parse(buf, limit)
	if consumed < 0 || consumed > len(buf) {
		t.Fatalf("consumed %d of %d bytes", consumed, len(buf))
	}
	if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("error %v wraps no parse sentinel", err)
	}
	if err == nil {
		// What is left must be an incomplete record.
		if again, n, err2 := p.Parse(buf[consumed:], limit); n != 0 || len(again) != 0 || err2 != nil {
			t.Fatalf("tail %q still parses: %d msgs, %d bytes, %v", buf[consumed:], len(again), n, err2)
		}
	}
	for i := range msgs {
		m := &msgs[i]
		rec, err := p.Append(nil, m)
		if err != nil {
			t.Fatalf("re-encoding %s: %v", formatMessage(*m), err)
		}
		back, n, err := p.Parse(rec, 0)
		if err != nil || n != len(rec) || len(back) != 1 || !messagesEqual(back[0], *m) {
			t.Fatalf("re-parse of %q: %d msgs, %d/%d bytes, %v\n got: %s\nwant: %s",
				rec, len(back), n, len(rec), err, formatMessages(back), formatMessage(*m))
		}
		// The other protocol: encoding may fail only for values with no
		// representation there. Otherwise, once a message has been through
		// the other protocol (which may normalise values, e.g. Infinity to
		// null in JSON), further round trips change nothing.
		rec1, err := other.Append(nil, m)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedValue) {
				t.Fatalf("%s encoding of %s: %v", other.Name(), formatMessage(*m), err)
			}
			continue
		}
		m2 := parseOne(t, other, rec1)
		a := mustAppend(t, p, &m2)
		m3 := parseOne(t, p, a)
		m4 := parseOne(t, other, mustAppend(t, other, &m3))
		if b := mustAppend(t, p, &m4); !bytes.Equal(a, b) {
			t.Fatalf("%s record not stable across a round trip through %s:\n %q\n %q", p.Name(), other.Name(), a, b)
		}
	}
}

func parseOne(t *testing.T, p Protocol, rec []byte) Message {
	t.Helper()
	msgs, n, err := p.Parse(rec, 0)
	if err != nil || n != len(rec) || len(msgs) != 1 {
		t.Fatalf("%s Parse(%q): %d msgs, %d/%d bytes, %v", p.Name(), rec, len(msgs), n, len(rec), err)
	}
	return msgs[0]
}

func FuzzParseJSON(f *testing.F) {
	addJSONSeeds(f)
	f.Fuzz(func(t *testing.T, buf []byte, limit uint16) {
		checkParse(t, JSON{}, MessagePack{}, buf, int(limit))
	})
}

func FuzzParseMessagePack(f *testing.F) {
	addMsgpackSeeds(f)
	f.Fuzz(func(t *testing.T, buf []byte, limit uint16) {
		checkParse(t, MessagePack{}, JSON{}, buf, int(limit))
	})
}

func FuzzHandshake(f *testing.F) {
	for _, s := range []string{
		`{"protocol":"json","version":1}` + rs,
		`{"protocol":"messagepack","version":2}` + rs + "\x02\x91\x06",
		`{"version":1,"protocol":"json","x":[{}]}` + rs + `{"type":6}` + rs,
		`{"protocol":"json"`,
		`{"protocol":"json","version":1.5}` + rs,
		rs,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		req, rest, ok, err := ParseHandshakeRequest(buf)
		switch {
		case err != nil:
			if ok || !errors.Is(err, ErrMalformed) {
				t.Fatalf("ok %v with error %v", ok, err)
			}
		case !ok:
			if bytes.IndexByte(buf, 0x1e) >= 0 || !bytes.Equal(rest, buf) {
				t.Fatalf("incomplete although %q holds a separator (rest %q)", buf, rest)
			}
		default:
			if len(rest) >= len(buf) || !bytes.HasSuffix(buf, rest) {
				t.Fatalf("rest %q is not a proper suffix of %q", rest, buf)
			}
			again := append(AppendHandshakeRequest(nil, req.Protocol, req.Version), rest...)
			req2, rest2, ok2, err2 := ParseHandshakeRequest(again)
			if !ok2 || err2 != nil || req2 != req || !bytes.Equal(rest2, rest) {
				t.Fatalf("re-encoded %q parsed as %+v, %q, %v, %v; want %+v", again, req2, rest2, ok2, err2, req)
			}
		}
	})
}

func FuzzJSONToMsgpack(f *testing.F) {
	for _, doc := range conversionDocs {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		mp, err := JSONToMsgpack(nil, src)
		if valid := json.Valid(src); (err == nil) != valid {
			// encoding/json accepts the same grammar, except that it
			// tolerates invalid UTF-8 and has no depth limit.
			if valid && !errors.Is(err, ErrMalformed) {
				t.Fatalf("JSONToMsgpack(%q): %v", src, err)
			}
			if !valid {
				t.Fatalf("JSONToMsgpack accepted invalid JSON %q", src)
			}
			return
		}
		if err != nil {
			return
		}
		js, err := MsgpackToJSON(nil, mp)
		if err != nil || !json.Valid(js) {
			t.Fatalf("MsgpackToJSON(% x) = %q, %v", mp, js, err)
		}
		// After one trip (which may turn 1e400 into null) it is stable.
		mp2, err := JSONToMsgpack(nil, js)
		if err != nil {
			t.Fatalf("JSONToMsgpack(%q): %v", js, err)
		}
		js2, err := MsgpackToJSON(nil, mp2)
		if err != nil || !bytes.Equal(js, js2) {
			t.Fatalf("%q -> % x -> %q -> % x -> %q (%v)", src, mp, js, mp2, js2, err)
		}
	})
}

func FuzzMsgpackToJSON(f *testing.F) {
	for _, s := range msgpackSeeds {
		f.Add(unhex(f, s)[1:])
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		js, err := MsgpackToJSON(nil, src)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedValue) {
				t.Fatalf("MsgpackToJSON(% x): %v", src, err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("MsgpackToJSON(% x) = %q is not valid JSON", src, js)
		}
		mp, err := JSONToMsgpack(nil, js)
		if err != nil {
			t.Fatalf("JSONToMsgpack(%q): %v", js, err)
		}
		js2, err := MsgpackToJSON(nil, mp)
		if err != nil || !bytes.Equal(js, js2) {
			t.Fatalf("% x -> %q -> % x -> %q (%v)", src, js, mp, js2, err)
		}
	})
}

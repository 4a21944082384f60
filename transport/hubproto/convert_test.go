package hubproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJSONToMsgpackGolden(t *testing.T) {
	s31, s32 := strings.Repeat("a", 31), strings.Repeat("a", 32)
	tests := []struct{ in, want string }{
		{`null`, "c0"}, {`true`, "c3"}, {`false`, "c2"},
		{`0`, "00"}, {`-0`, "00"}, {`127`, "7f"}, {`128`, "cc 80"}, {`255`, "cc ff"}, {`256`, "cd 01 00"},
		{`65536`, "ce 00 01 00 00"}, {`4294967296`, "cf 00 00 00 01 00 00 00 00"},
		{`-1`, "ff"}, {`-32`, "e0"}, {`-33`, "d0 df"}, {`-128`, "d0 80"}, {`-129`, "d1 ff 7f"},
		{`-32769`, "d2 ff ff 7f ff"}, {`-2147483649`, "d3 ff ff ff ff 7f ff ff ff"},
		{`9223372036854775807`, "cf 7f ff ff ff ff ff ff ff"},
		{`-9223372036854775808`, "d3 80 00 00 00 00 00 00 00"},
		{`18446744073709551615`, "cf ff ff ff ff ff ff ff ff"},
		{`18446744073709551616`, "cb 43 f0 00 00 00 00 00 00"},
		{`-9223372036854775809`, "cb c3 e0 00 00 00 00 00 00"},
		{`123456789012345678901234567890`, "cb 45 f8 ee 90 ff 6c 37 3e"},
		{`1.5`, "cb 3f f8 00 00 00 00 00 00"}, {`1.0`, "cb 3f f0 00 00 00 00 00 00"},
		{`1e2`, "cb 40 59 00 00 00 00 00 00"}, {`-0.0`, "cb 80 00 00 00 00 00 00 00"},
		{`2.5E-1`, "cb 3f d0 00 00 00 00 00 00"}, {`1e400`, "cb 7f f0 00 00 00 00 00 00"},
		{`""`, "a0"}, {`"a"`, "a1 61"}, {`"\u00fc"`, "a2 c3 bc"}, {`"ü"`, "a2 c3 bc"},
		{`"\ud83d\ude00"`, "a4 f0 9f 98 80"}, {`"😀"`, "a4 f0 9f 98 80"},
		{`"\n\"\\\/\b\f\r\t"`, "a8 0a 22 5c 2f 08 0c 0d 09"},
		{`"\ud800"`, "a3 ef bf bd"}, {`"\ude00x"`, "a4 ef bf bd 78"}, {`"\ud83dx"`, "a4 ef bf bd 78"},
		{`"` + s31 + `"`, "bf " + hexOf(s31)},
		{`"` + s32 + `"`, "d9 20 " + hexOf(s32)},
		{`"\n` + strings.Repeat("a", 30) + `"`, "bf 0a " + hexOf(strings.Repeat("a", 30))},          // escaped 32, decoded 31
		{`"\u0041` + strings.Repeat("a", 250) + `"`, "d9 fb 41 " + hexOf(strings.Repeat("a", 250))}, // escaped 256, decoded 251
		{`[]`, "90"}, {`{}`, "80"}, {`[[]]`, "91 90"}, {`{"a":{}}`, "81 a1 61 80"},
		{` [ 1 , 2 ] `, "92 01 02"}, {"\t{\n\"k\"\r:\n[true,null]}\n", "81 a1 6b 92 c3 c0"},
		{`{"a\u0062":1}`, "81 a2 61 62 01"},
		{jsonArray(15), "9f " + strings.Repeat("01 ", 15)},
		{jsonArray(16), "dc 00 10 " + strings.Repeat("01 ", 16)},
		{`[` + jsonArray(16) + `,` + jsonArray(1) + `]`, "92 dc 00 10 " + strings.Repeat("01 ", 16) + "91 01"},
		{jsonObject(16), "de 00 10 " + objectHex(16)},
	}
	for _, tt := range tests {
		got, err := JSONToMsgpack([]byte{0xee}, []byte(tt.in))
		if err != nil {
			t.Errorf("JSONToMsgpack(%.40s): %v", tt.in, err)
			continue
		}
		if want := append([]byte{0xee}, unhex(t, tt.want)...); !bytes.Equal(got, want) {
			t.Errorf("JSONToMsgpack(%.40s) =\n % x\nwant\n % x", tt.in, got, want)
		}
	}
}

func TestJSONToMsgpackLargeContainers(t *testing.T) {
	for _, n := range []int{65535, 65536, 70000} {
		arr, err := JSONToMsgpack(nil, []byte(jsonArray(n)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := refDecode(arr)
		if l, ok := got.([]any); err != nil || !ok || len(l) != n {
			t.Errorf("array of %d: reference decoder got %T, %v", n, got, err)
		}
		wantHdr := "dc"
		if n > 65535 {
			wantHdr = "dd"
		}
		if hdr := fmt.Sprintf("%02x", arr[0]); hdr != wantHdr {
			t.Errorf("array of %d: header %s, want %s", n, hdr, wantHdr)
		}
		obj, err := JSONToMsgpack(nil, []byte(jsonObject(n)))
		if err != nil {
			t.Fatal(err)
		}
		gotObj, err := refDecode(obj)
		if m, ok := gotObj.(map[string]any); err != nil || !ok || len(m) != n {
			t.Errorf("object of %d: reference decoder got %T, %v", n, gotObj, err)
		}
	}
	long := strings.Repeat("\\u00fc", 20000) // 120000 escaped bytes, 40000 decoded
	b, err := JSONToMsgpack(nil, []byte(`"`+long+`"`))
	if err != nil {
		t.Fatal(err)
	}
	if want := append(unhex(t, "da 9c 40"), []byte(strings.Repeat("ü", 20000))...); !bytes.Equal(b, want) {
		t.Errorf("long escaped string: got % x..., want % x...", b[:5], want[:5])
	}
}

func TestMsgpackToJSONGolden(t *testing.T) {
	tests := []struct{ in, want string }{
		{"c0", `null`}, {"c2", `false`}, {"c3", `true`},
		{"00", `0`}, {"7f", `127`}, {"e0", `-32`}, {"ff", `-1`}, {"cc ff", `255`}, {"cd ff ff", `65535`},
		{"ce ff ff ff ff", `4294967295`}, {"cf ff ff ff ff ff ff ff ff", `18446744073709551615`},
		{"d0 80", `-128`}, {"d1 80 00", `-32768`}, {"d2 80 00 00 00", `-2147483648`},
		{"d3 80 00 00 00 00 00 00 00", `-9223372036854775808`}, {"d0 05", `5`},
		{"ca 3f c0 00 00", `1.5`}, {"ca 3d cc cc cd", `0.1`}, {"cb 3f b9 99 99 99 99 99 9a", `0.1`},
		{"cb 40 59 00 00 00 00 00 00", `100.0`}, {"cb 80 00 00 00 00 00 00 00", `-0.0`},
		{"cb 44 b5 2d 02 c7 e1 4a f6", `1e+23`}, {"cb 3e b0 c6 f7 a0 b5 ed 8d", `0.000001`},
		{"cb 3e 7a d7 f2 9a bc af 48", `1e-7`}, {"ca 7f 7f ff ff", `3.4028235e+38`},
		{"cb 7f f8 00 00 00 00 00 00", `null`}, {"cb 7f f0 00 00 00 00 00 00", `null`},
		{"cb ff f0 00 00 00 00 00 00", `null`}, {"ca 7f c0 00 00", `null`},
		{"a0", `""`}, {"a2 c3 bc", `"ü"`}, {"a4 f0 9f 98 80", `"😀"`}, {"a3 22 5c 0a", `"\"\\\n"`},
		{"a2 01 1f", `"\u0001\u001f"`}, {"a1 ff", "\"\ufffd\""}, {"a3 61 c3 62", "\"a\ufffdb\""}, {"a3 e2 80 a8", "\"\u2028\""},
		{"d9 01 78", `"x"`}, {"da 00 01 78", `"x"`}, {"db 00 00 00 01 78", `"x"`},
		{"c4 03 01 02 03", `"AQID"`}, {"c4 00", `""`}, {"c5 00 01 ff", `"/w=="`}, {"c6 00 00 00 02 ff ff", `"//8="`},
		{"90", `[]`}, {"80", `{}`}, {"92 01 a1 78", `[1,"x"]`}, {"dc 00 02 c3 c2", `[true,false]`},
		{"dd 00 00 00 01 c0", `[null]`}, {"de 00 01 a1 61 01", `{"a":1}`}, {"df 00 00 00 01 a1 61 01", `{"a":1}`},
		{"84 01 a1 61 c3 a1 62 c0 a1 63 ff a1 64", `{"1":"a","true":"b","null":"c","-1":"d"}`},
		{"82 cb 3f f8 00 00 00 00 00 00 a1 61 c4 01 ff a1 62", `{"1.5":"a","/w==":"b"}`},
		{"81 a1 22 a1 22", `{"\"":"\""}`},
		{"81 a1 6b 93 81 a1 6e 90 80 a0", `{"k":[{"n":[]},{},""]}`},
		{"d6 ff 00 00 00 00", `"1970-01-01T00:00:00Z"`},
		{"d6 ff 65 92 00 80", `"2024-01-01T00:00:00Z"`},
		{"d7 ff 00 00 00 04 65 92 00 80", `"2024-01-01T00:00:00.000000001Z"`},
		{"c7 0c ff 07 5b cd 15 ff ff ff ff ff ff ff ff", `"1969-12-31T23:59:59.123456789Z"`},
		{"81 d6 ff 00 00 00 00 01", `{"1970-01-01T00:00:00Z":1}`},
	}
	for _, tt := range tests {
		got, err := MsgpackToJSON([]byte("p:"), unhex(t, tt.in))
		if err != nil {
			t.Errorf("MsgpackToJSON(%s): %v", tt.in, err)
			continue
		}
		if string(got) != "p:"+tt.want {
			t.Errorf("MsgpackToJSON(%s) = %s, want %s", tt.in, got[2:], tt.want)
		}
		if !json.Valid(got[2:]) {
			t.Errorf("MsgpackToJSON(%s) = %s is not valid JSON", tt.in, got[2:])
		}
	}
}

func TestConvertErrors(t *testing.T) {
	deepJSON := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	for _, in := range []string{``, ` `, `[1,]`, `[1`, `{"a"}`, `{"a":1,}`, `{1:2}`, `[1] 2`, `01`, `+1`, `.5`,
		`"\ud800`, "\"\xff\"", `'a'`, `nul`, `[NaN]`, `Infinity`, deepJSON} {
		out, err := JSONToMsgpack([]byte("keep"), []byte(in))
		if !errors.Is(err, ErrMalformed) || string(out) != "keep" {
			t.Errorf("JSONToMsgpack(%.30q) = %q, %v; want dst unchanged and ErrMalformed", in, out, err)
		}
	}
	if _, err := JSONToMsgpack(nil, []byte(deepJSON[1:len(deepJSON)-1])); err != nil {
		t.Errorf("JSONToMsgpack at exactly the depth limit: %v", err)
	}

	deepMP := strings.Repeat("91 ", maxDepth+1) + "c0"
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrMalformed}, {"c1", ErrMalformed}, {"92 01", ErrMalformed}, {"01 02", ErrMalformed},
		{"a2 61", ErrMalformed}, {"cb 00 00", ErrMalformed}, {"c4 05 00", ErrMalformed},
		{"81 a1 61", ErrMalformed}, {deepMP, ErrMalformed},
		{"d4 05 00", ErrUnsupportedValue}, {"c7 02 07 00 00", ErrUnsupportedValue},
		{"81 91 01 01", ErrUnsupportedValue}, {"81 80 01", ErrUnsupportedValue},
		{"c7 03 ff 00 00 00", ErrUnsupportedValue},             // timestamp of 3 bytes
		{"d7 ff ff ff ff ff 00 00 00 00", ErrUnsupportedValue}, // nanoseconds > 999999999
		{"92 01 d4 05 00", ErrUnsupportedValue},
	}
	for _, tt := range tests {
		out, err := MsgpackToJSON([]byte("keep"), unhex(t, tt.in))
		if !errors.Is(err, tt.want) || string(out) != "keep" {
			t.Errorf("MsgpackToJSON(%.30s) = %q, %v; want dst unchanged and %v", tt.in, out, err, tt.want)
		}
	}
}

// conversionDocs are JSON documents covering the value space.
var conversionDocs = []string{
	`null`, `true`, `[false]`, `0`, `-7`, `42`, `9007199254740993`, `9223372036854775807`, `-9223372036854775808`,
	`18446744073709551615`, `18446744073709551616`, `1e21`, `1.5e-7`, `3.141592653589793`, `-2.5`, `1.0`, `100.25`,
	`"plain"`, `"esc \" \\ \/ \b\f\n\r\t \u0001 \u001f"`, `"\u00fc\u4e2d\ud83d\ude00 ü中😀"`, `""`,
	`{"a":1,"b":[1,2,{"c":null}],"d":{"e":{"f":{"g":"deep"}}},"":"empty key","ü":"\u00fc"}`,
	`[[],{},[[]],[{}],{"x":[]}]`,
	`{"users":[{"id":1,"name":"Ann","tags":["a","b"],"score":99.5,"active":true},{"id":2,"name":"Bob","tags":[],"score":-1,"active":false}]}`,
	jsonArray(40), jsonObject(20),
}

// TestJSONToMsgpackMatchesReferenceDecoder checks the MessagePack output
// with an independent decoder against encoding/json's view of the input.
func TestJSONToMsgpackMatchesReferenceDecoder(t *testing.T) {
	for _, doc := range conversionDocs {
		mp, err := JSONToMsgpack(nil, []byte(doc))
		if err != nil {
			t.Fatalf("JSONToMsgpack(%s): %v", doc, err)
		}
		fromMP, err := refDecode(mp)
		if err != nil {
			t.Fatalf("reference decoder rejects % x from %s: %v", mp, doc, err)
		}
		want := decodeJSON(t, doc)
		if got := normalizeValue(fromMP); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", doc, got, want)
		}
	}
}

// TestMsgpackToJSONMatchesReferenceEncoder converts values written by the
// independent reference encoder (widest formats) to JSON.
func TestMsgpackToJSONMatchesReferenceEncoder(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	tests := []struct {
		value any
		want  string
	}{
		{map[string]any{"a": []any{int64(1), "x", nil, true}, "b": map[string]any{"c": 2.5}}, `{"a":[1,"x",null,true],"b":{"c":2.5}}`},
		{[]any{int64(-5), int64(300), int64(math.MinInt64), uint64(math.MaxUint64), int64(0)},
			`[-5,300,-9223372036854775808,18446744073709551615,0]`},
		{[]any{float32(0.25), float32(0.1), 1e-9, 123456.789, 2.0}, `[0.25,0.1,1e-9,123456.789,2.0]`},
		{[]byte{0, 1, 2, 250}, `"AAEC+g=="`},
		{ts, `"2025-03-04T05:06:07.00000089Z"`},
		{time.Unix(1, 0).UTC(), `"1970-01-01T00:00:01Z"`},
		{"tab\tquote\"uni\u00e9", `"tab\tquote\"unié"`},
		{strings.Repeat("x", 70000), `"` + strings.Repeat("x", 70000) + `"`},
	}
	for _, tt := range tests {
		mp := refEncode(tt.value)
		got, err := MsgpackToJSON(nil, mp)
		if err != nil {
			t.Errorf("MsgpackToJSON(%T % x): %v", tt.value, mp, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("MsgpackToJSON(%T) = %.80s, want %.80s", tt.value, got, tt.want)
		}
	}
}

// Converting JSON to MessagePack and back keeps the value, and a second
// conversion gives exactly the bytes of the first.
func TestConversionRoundTrip(t *testing.T) {
	for _, doc := range conversionDocs {
		mp1, err := JSONToMsgpack(nil, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		js, err := MsgpackToJSON(nil, mp1)
		if err != nil {
			t.Fatalf("MsgpackToJSON(% x): %v", mp1, err)
		}
		if got, want := decodeJSON(t, string(js)), decodeJSON(t, doc); !reflect.DeepEqual(got, want) {
			t.Errorf("%s -> %s changed the value:\n got %#v\nwant %#v", doc, js, got, want)
		}
		mp2, err := JSONToMsgpack(nil, js)
		if err != nil || !bytes.Equal(mp1, mp2) {
			t.Errorf("%s -> %s: second conversion % x, first % x (%v)", doc, js, mp2, mp1, err)
		}
	}
}

// A message received in one protocol is re-encoded for the other and back.
func TestCrossProtocolMessages(t *testing.T) {
	for _, m := range sampleMessages(t, FormatJSON) {
		mpRec := mustAppend(t, MessagePack{}, &m)
		viaMP := parseAll(t, MessagePack{}, mpRec)
		if len(viaMP) != 1 {
			t.Fatalf("got %d messages", len(viaMP))
		}
		jsRec := mustAppend(t, JSON{}, &viaMP[0])
		back := parseAll(t, JSON{}, jsRec)
		if len(back) != 1 {
			t.Fatalf("got %d messages", len(back))
		}
		// Same fields; raw values equal as JSON values.
		want, got := normalize(m), normalize(back[0])
		wantArgs, gotArgs := want.Arguments, got.Arguments
		want.Arguments, got.Arguments = nil, nil
		wantItem, gotItem, wantRes, gotRes := want.Item, got.Item, want.Result, got.Result
		want.Item, got.Item, want.Result, got.Result = RawValue{}, RawValue{}, RawValue{}, RawValue{}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("fields changed:\n got %s\nwant %s", formatMessage(back[0]), formatMessage(m))
		}
		if len(wantArgs) != len(gotArgs) {
			t.Fatalf("%d arguments, want %d", len(gotArgs), len(wantArgs))
		}
		pairs := [][2]RawValue{{wantItem, gotItem}, {wantRes, gotRes}}
		for i := range wantArgs {
			pairs = append(pairs, [2]RawValue{wantArgs[i], gotArgs[i]})
		}
		for _, p := range pairs {
			if len(p[0].Data) == 0 && len(p[1].Data) == 0 {
				continue
			}
			if g, w := decodeJSON(t, string(p[1].Data)), decodeJSON(t, string(p[0].Data)); !reflect.DeepEqual(g, w) {
				t.Errorf("value %s became %s", p[0].Data, p[1].Data)
			}
		}
		// And MessagePack → JSON → MessagePack is stable.
		again := mustAppend(t, MessagePack{}, &back[0])
		if !bytes.Equal(again, mpRec) {
			t.Errorf("msgpack record changed after a JSON round trip:\n % x\n % x", again, mpRec)
		}
	}
}

// decodeJSON decodes doc with encoding/json and normalises numbers.
func decodeJSON(t *testing.T, doc string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json rejects %.60s: %v", doc, err)
	}
	return normalizeValue(v)
}

// normalizeValue maps decoded JSON or MessagePack values to one shape:
// integers to int64 (uint64 above its range), floats to float64, bytes to
// base64 strings and times to RFC 3339 strings.
func normalizeValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := strconv.ParseFloat(s, 64)
		return f
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalizeValue(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeValue(e)
		}
		return out
	}
	return v
}

func hexOf(s string) string { return fmt.Sprintf("% x", s) }

// jsonArray returns a JSON array of n ones.
func jsonArray(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]"
}

// jsonObject returns a JSON object with n keys "k0".."k(n-1)", each 1.
func jsonObject(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":1`, i)
	}
	b.WriteByte('}')
	return b.String()
}

// objectHex is the MessagePack content of jsonObject(n) after its header.
func objectHex(n int) string {
	var b strings.Builder
	for i := range n {
		k := "k" + strconv.Itoa(i)
		fmt.Fprintf(&b, "%02x % x 01 ", 0xa0|len(k), k)
	}
	return b.String()
}

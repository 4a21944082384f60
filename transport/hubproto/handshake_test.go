package hubproto

import (
	"errors"
	"testing"
)

func TestParseHandshakeRequest(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     HandshakeRequest
		wantRest string
	}{
		{"json v1", `{"protocol":"json","version":1}` + rs, HandshakeRequest{"json", 1}, ""},
		{"json v2 stateful", `{"protocol":"json","version":2}` + rs, HandshakeRequest{"json", 2}, ""},
		{"messagepack", `{"protocol":"messagepack","version":1}` + rs, HandshakeRequest{"messagepack", 1}, ""},
		{"version first", `{"version":2,"protocol":"messagepack"}` + rs, HandshakeRequest{"messagepack", 2}, ""},
		{"unknown properties and spaces", ` { "minorVersion" : 0 , "protocol" : "json" , "x":{"y":[1]}, "version" : 1 } ` + rs,
			HandshakeRequest{"json", 1}, ""},
		{"followed by ping", `{"protocol":"json","version":1}` + rs + `{"type":6}` + rs,
			HandshakeRequest{"json", 1}, `{"type":6}` + rs},
		{"followed by binary", `{"protocol":"messagepack","version":1}` + rs + "\x02\x91\x06",
			HandshakeRequest{"messagepack", 1}, "\x02\x91\x06"},
		{"followed by partial record", `{"protocol":"json","version":1}` + rs + `{"ty`,
			HandshakeRequest{"json", 1}, `{"ty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, rest, ok, err := ParseHandshakeRequest([]byte(tt.in))
			if err != nil || !ok {
				t.Fatalf("ParseHandshakeRequest = ok %v, err %v; want ok", ok, err)
			}
			if req != tt.want {
				t.Errorf("request = %+v, want %+v", req, tt.want)
			}
			if string(rest) != tt.wantRest {
				t.Errorf("rest = %q, want %q", rest, tt.wantRest)
			}
		})
	}
}

func TestParseHandshakeRequestPartial(t *testing.T) {
	full := `{"protocol":"json","version":1}` + rs
	for i := 0; i < len(full); i++ {
		in := []byte(full[:i])
		req, rest, ok, err := ParseHandshakeRequest(in)
		if ok || err != nil {
			t.Fatalf("ParseHandshakeRequest(%q) = ok %v, err %v; want incomplete", in, ok, err)
		}
		if req != (HandshakeRequest{}) || string(rest) != string(in) {
			t.Errorf("incomplete: req %+v rest %q; want zero and the input", req, rest)
		}
	}
}

func TestParseHandshakeRequestMalformed(t *testing.T) {
	for _, in := range []string{
		rs,
		`{}` + rs,
		`{"protocol":"json"}` + rs,
		`{"version":1}` + rs,
		`{"protocol":null,"version":1}` + rs,
		`{"protocol":1,"version":1}` + rs,
		`{"protocol":"json","version":"1"}` + rs,
		`{"protocol":"json","version":1.5}` + rs,
		`{"protocol":"json","version":1` + rs,
		`{"protocol":"json","version":1}}` + rs,
		`["json",1]` + rs,
		"{\"protocol\":\"js\xffon\",\"version\":1}" + rs,
	} {
		_, _, ok, err := ParseHandshakeRequest([]byte(in))
		if ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHandshakeRequest(%q) = ok %v, err %v; want ErrMalformed", in, ok, err)
		}
	}
}

func TestEncodeHandshakeResponse(t *testing.T) {
	tests := []struct{ errMsg, want string }{
		{"", "{}" + rs},
		{"The protocol 'x' is not supported.", `{"error":"The protocol 'x' is not supported."}` + rs},
		{"quote \" and\nnewline", `{"error":"quote \" and\nnewline"}` + rs},
	}
	for _, tt := range tests {
		got := EncodeHandshakeResponse(tt.errMsg)
		if string(got) != tt.want {
			t.Errorf("EncodeHandshakeResponse(%q) = %q, want %q", tt.errMsg, got, tt.want)
		}
		errMsg, rest, ok, err := ParseHandshakeResponse(append(got, "x"...))
		if err != nil || !ok || errMsg != tt.errMsg || string(rest) != "x" {
			t.Errorf("ParseHandshakeResponse(%q) = %q, %q, %v, %v", got, errMsg, rest, ok, err)
		}
	}
	// The shared success response must not be modifiable through a result.
	EncodeHandshakeResponse("")[0] = 'X'
	if got := EncodeHandshakeResponse(""); string(got) != "{}"+rs {
		t.Errorf("EncodeHandshakeResponse after mutation = %q", got)
	}
}

func TestHandshakeRequestRoundTrip(t *testing.T) {
	rec := AppendHandshakeRequest([]byte("p"), "messagepack", 2)
	if string(rec) != `p{"protocol":"messagepack","version":2}`+rs {
		t.Fatalf("AppendHandshakeRequest = %q", rec)
	}
	req, rest, ok, err := ParseHandshakeRequest(rec[1:])
	if err != nil || !ok || req != (HandshakeRequest{"messagepack", 2}) || len(rest) != 0 {
		t.Errorf("round trip = %+v, %q, %v, %v", req, rest, ok, err)
	}
}

func TestParseHandshakeResponse(t *testing.T) {
	if _, rest, ok, err := ParseHandshakeResponse([]byte("{}")); ok || err != nil || string(rest) != "{}" {
		t.Errorf("partial response = %q, %v, %v; want incomplete", rest, ok, err)
	}
	if _, _, ok, err := ParseHandshakeResponse([]byte(`{"type":6}` + rs)); ok || !errors.Is(err, ErrMalformed) {
		t.Errorf("hub message as response = ok %v, err %v; want ErrMalformed", ok, err)
	}
	errMsg, _, ok, err := ParseHandshakeResponse([]byte(`{"unknown":[1],"error":null}` + rs))
	if !ok || err != nil || errMsg != "" {
		t.Errorf("response with null error = %q, %v, %v", errMsg, ok, err)
	}
}

package hubproto

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// The numeric values are the wire protocol: pin them.
func TestMessageTypeValues(t *testing.T) {
	tests := []struct {
		typ       MessageType
		value     int
		name      string
		trackable bool
	}{
		{Invocation, 1, "Invocation", true},
		{StreamItem, 2, "StreamItem", true},
		{Completion, 3, "Completion", true},
		{StreamInvocation, 4, "StreamInvocation", true},
		{CancelInvocation, 5, "CancelInvocation", true},
		{Ping, 6, "Ping", false},
		{Close, 7, "Close", false},
		{Ack, 8, "Ack", false},
		{Sequence, 9, "Sequence", false},
	}
	for _, tt := range tests {
		if int(tt.typ) != tt.value {
			t.Errorf("%s = %d, want %d", tt.name, int(tt.typ), tt.value)
		}
		if got := tt.typ.String(); got != tt.name {
			t.Errorf("MessageType(%d).String() = %q, want %q", tt.value, got, tt.name)
		}
		if got := tt.typ.Trackable(); got != tt.trackable {
			t.Errorf("%s.Trackable() = %v, want %v", tt.name, got, tt.trackable)
		}
		if !tt.typ.Known() {
			t.Errorf("%s.Known() = false, want true", tt.name)
		}
	}
	for _, unknown := range []MessageType{0, 10, -1} {
		if unknown.Known() || unknown.Trackable() {
			t.Errorf("MessageType(%d) is Known or Trackable", int(unknown))
		}
	}
	if got := MessageType(42).String(); got != "MessageType(42)" {
		t.Errorf("MessageType(42).String() = %q", got)
	}
}

func TestLookupAndMetadata(t *testing.T) {
	tests := []struct {
		name           string
		wantName       string
		transferFormat string
	}{
		{"json", NameJSON, TransferFormatText},
		{"JSON", NameJSON, TransferFormatText},
		{"messagepack", NameMessagePack, TransferFormatBinary},
		{"MessagePack", NameMessagePack, TransferFormatBinary},
	}
	for _, tt := range tests {
		p := Lookup(tt.name)
		if p == nil {
			t.Fatalf("Lookup(%q) = nil", tt.name)
		}
		if p.Name() != tt.wantName || p.TransferFormat() != tt.transferFormat || p.Version() != 2 {
			t.Errorf("Lookup(%q) = %s/%s/v%d, want %s/%s/v2", tt.name, p.Name(), p.TransferFormat(), p.Version(),
				tt.wantName, tt.transferFormat)
		}
	}
	if p := Lookup("protobuf"); p != nil {
		t.Errorf("Lookup(protobuf) = %v, want nil", p)
	}
}

func TestRawValueAppend(t *testing.T) {
	var zero RawValue
	if !zero.IsZero() {
		t.Fatal("zero RawValue: IsZero() = false")
	}
	if got, err := zero.AppendJSON(nil); err != nil || string(got) != "null" {
		t.Errorf("zero.AppendJSON = %q, %v; want null", got, err)
	}
	if got, err := zero.AppendMsgpack(nil); err != nil || !bytes.Equal(got, []byte{0xc0}) {
		t.Errorf("zero.AppendMsgpack = %x, %v; want c0", got, err)
	}
	j := jv(`{"a":[1,"x"]}`)
	if got, _ := j.AppendJSON([]byte("p:")); string(got) != `p:{"a":[1,"x"]}` {
		t.Errorf("JSON.AppendJSON = %q", got)
	}
	if got, err := j.AppendMsgpack(nil); err != nil || !bytes.Equal(got, unhex(t, "81 a1 61 92 01 a1 78")) {
		t.Errorf("JSON.AppendMsgpack = %x, %v", got, err)
	}
	m := mv(t, "81 a1 61 92 01 a1 78")
	if got, err := m.AppendJSON(nil); err != nil || string(got) != `{"a":[1,"x"]}` {
		t.Errorf("Msgpack.AppendJSON = %q, %v", got, err)
	}
	bad := RawValue{Format: 9, Data: []byte("1")}
	if _, err := bad.AppendJSON(nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("unknown format AppendJSON err = %v, want ErrInvalidMessage", err)
	}
	if _, err := bad.AppendMsgpack(nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("unknown format AppendMsgpack err = %v, want ErrInvalidMessage", err)
	}
}

func TestMessageLogValue(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	m := &Message{Type: Invocation, InvocationID: "7", Target: "Send", Arguments: []RawValue{jv(`"secret"`)}}
	logger.Info("msg", "m", m)
	out := buf.String()
	for _, want := range []string{"m.type=Invocation", "m.invocationId=7", "m.target=Send", "m.args=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("log output %q leaks argument payload", out)
	}
}

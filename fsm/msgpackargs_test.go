package fsm_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/backplane/backplane/fsm"
)

// mpArgs is a MessagePack array of values JSON cannot hold: bin [1,2], a
// timestamp, a map with an integer key, NaN and a user extension.
var mpArgs = mustHex("95" + "c4020102" + "d6ff00000001" + "8101a161" + "cb7ff8000000000001" + "d4052a")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// oldPublishHex is a publish as versions before MessagePack arguments wrote
// it (TestGoldenEncoding's "EncodePublish"): it must decode, apply and read
// exactly as it did.
const oldPublishHex = "01" + "0463686174" + "02" + "02" + "026731" + "026732" + "01" + "026331" +
	"0472656376" + "035b315d" + "016b"

func TestGoldenEncodingMsgpackArguments(t *testing.T) {
	got := fsm.EncodePublish(&fsm.Publish{Hub: "h", Audience: fsm.ToAll, Target: "t",
		Arguments: []byte(`[1]`), MsgpackArguments: []byte{0x91, 0x01}})
	want := "01" + "0168" + "01" + "00" + "00" + "0174" + "035b315d" + "00" + "029101"
	if h := hex.EncodeToString(got); h != want {
		t.Errorf("got %s, want %s", h, want)
	}
	// Without MessagePack arguments the bytes are the previous version's.
	old := fsm.EncodePublish(&fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"g1", "g2"},
		Excluded: []string{"c1"}, Target: "recv", Arguments: []byte("[1]"), IdempotencyKey: "k"})
	if h := hex.EncodeToString(old); h != oldPublishHex {
		t.Errorf("publish without MessagePack arguments: got %s, want %s", h, oldPublishHex)
	}
}

func TestOldPublishEntryStillApplies(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	res := f.mustApply(t0, fsm.Command(mustHex(oldPublishHex)))
	if res[0].Index != 1 {
		t.Fatalf("index: got %d, want 1", res[0].Index)
	}
	filter := &fsm.Filter{Hub: "chat", Groups: []string{"g2"}, Self: "c2"}
	for name, read := range map[string]func() (fsm.Page, error){
		"tail":  func() (fsm.Page, error) { return f.Read(filter, 0, 10) },
		"store": func() (fsm.Page, error) { return fsm.ReadStore(f.FSM, filter, 0, 10) },
	} {
		page, err := read()
		if err != nil || len(page.Messages) != 1 {
			t.Fatalf("%s: got %+v, %v, want one message", name, page, err)
		}
		m := page.Messages[0]
		if m.Target != "recv" || string(m.Arguments) != "[1]" || m.MsgpackArguments != nil {
			t.Errorf("%s: got target %q arguments %s msgpack %x, want recv [1] none", name, m.Target, m.Arguments, m.MsgpackArguments)
		}
	}
}

func TestMsgpackArgumentsStoredAndRead(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	json := []byte(`["AQI=","1970-01-01T00:00:01Z",{"1":"a"},null,{"type":5,"data":"Kg=="}]`)
	cmd := fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "recv", Arguments: json, MsgpackArguments: mpArgs})
	if err := fsm.ValidateCommand(cmd); err != nil {
		t.Fatalf("ValidateCommand: %v", err)
	}
	f.mustApply(t0, cmd, toAll())
	for name, read := range map[string]func() (fsm.Page, error){
		"tail":      func() (fsm.Page, error) { return f.ReadAll(0, 10) },
		"store":     func() (fsm.Page, error) { return fsm.ReadAllStore(f.FSM, 0, 10) },
		"tail read": func() (fsm.Page, error) { return f.Read(&fsm.Filter{Hub: hub, Broadcast: true}, 0, 10) },
		"store read": func() (fsm.Page, error) {
			return fsm.ReadStore(f.FSM, &fsm.Filter{Hub: hub, Broadcast: true}, 0, 10)
		},
	} {
		page, err := read()
		if err != nil || len(page.Messages) != 2 {
			t.Fatalf("%s: got %+v, %v, want two messages", name, page, err)
		}
		if m := page.Messages[0]; !bytes.Equal(m.MsgpackArguments, mpArgs) || !bytes.Equal(m.Arguments, json) {
			t.Errorf("%s: got msgpack %x json %s, want %x %s", name, m.MsgpackArguments, m.Arguments, mpArgs, json)
		}
		if m := page.Messages[1]; m.MsgpackArguments != nil || string(m.Arguments) != `["x"]` {
			t.Errorf("%s: JSON publish: got msgpack %x json %s", name, m.MsgpackArguments, m.Arguments)
		}
	}
}

// TestMsgpackArgumentsRejected checks that a publish whose MessagePack
// arguments are not one well-formed array is refused by the edge and by
// every replica alike, without a panic, and appends nothing.
func TestMsgpackArgumentsRejected(t *testing.T) {
	base := fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`)})
	deep := append(bytes.Repeat([]byte{0x91}, 300), 0x01)
	for name, tail := range map[string][]byte{
		"not an array":     {0x02, 0x81, 0x01},
		"truncated":        {0x02, 0x92, 0x01},
		"trailing data":    {0x03, 0x91, 0x01, 0x01},
		"bad format byte":  {0x02, 0x91, 0xc1},
		"empty":            {0x00},
		"length past end":  {0x05, 0x91},
		"too deep":         append([]byte{0xae, 0x02}, deep...),
		"bytes after them": {0x02, 0x91, 0x01, 0x00},
	} {
		cmd := fsm.Command(append(append([]byte(nil), base...), tail...))
		if err := fsm.ValidateCommand(cmd); !errors.Is(err, fsm.ErrInvalidCommand) {
			t.Errorf("%s: ValidateCommand: got %v, want ErrInvalidCommand", name, err)
		}
		f := newTestFSM(t, fsm.Config{})
		res := f.apply(t0, cmd)
		if !errors.Is(res[0].Err, fsm.ErrInvalidCommand) || f.LastMessage() != 0 {
			t.Errorf("%s: apply: got %+v, last message %d, want a rejection and nothing appended", name, res[0], f.LastMessage())
		}
	}
	p := &fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "recv", Arguments: []byte(`[1]`), MsgpackArguments: []byte{}}
	if err := fsm.ValidatePublish(p); !errors.Is(err, fsm.ErrInvalidCommand) {
		t.Errorf("ValidatePublish with empty MessagePack arguments: got %v, want ErrInvalidCommand", err)
	}
}

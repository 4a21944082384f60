package signalr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/hubproto"
	"github.com/gorilla/websocket"
)

// mpClient is a hand-driven MessagePack client on a wsClient.
type mpClient struct {
	*wsClient
	pending []hubproto.Message
}

// openMsgpack connects a MessagePack client to hub: with skipNegotiation,
// or negotiated with stateful reconnect (version 2).
func (ts *testServer) openMsgpack(hub string, stateful bool) *mpClient {
	ts.t.Helper()
	query, version := "", "1"
	var n negotiation
	if stateful {
		n = ts.negotiate(hub, "useStatefulReconnect=true")
		query, version = "id="+url.QueryEscape(n.ConnectionToken), "2"
	}
	c, resp, err := ts.dialWS(hub, query, nil)
	if err != nil {
		ts.t.Fatalf("upgrade: got error %v (status %v), want a WebSocket", err, statusOf(resp))
	}
	c.id, c.token = n.ConnectionID, n.ConnectionToken
	c.write(`{"protocol":"messagepack","version":` + version + `}` + rs)
	if f := c.frame(); f.kind != websocket.BinaryMessage || string(f.data) != "{}"+rs {
		ts.t.Fatalf("handshake reply: got kind %d %q, want a binary %q", f.kind, f.data, "{}"+rs)
	}
	return &mpClient{wsClient: c}
}

// send writes one message.
func (c *mpClient) send(m *hubproto.Message) {
	c.t.Helper()
	rec, err := hubproto.MessagePack{}.Append(nil, m)
	if err != nil {
		c.t.Fatalf("encode %+v: %v", m, err)
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, rec); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// nextInvocation returns the next Invocation of target; other messages
// stay queued.
func (c *mpClient) nextInvocation(target string) hubproto.Message {
	c.t.Helper()
	return c.nextMatching(func(m *hubproto.Message) bool { return m.Type == hubproto.Invocation && m.Target == target })
}

// completion returns the Completion of id; other messages stay queued.
func (c *mpClient) completion(id string) hubproto.Message {
	c.t.Helper()
	return c.nextMatching(func(m *hubproto.Message) bool { return m.Type == hubproto.Completion && m.InvocationID == id })
}

// nextMatching returns the first message, queued or still to come, that
// match accepts, and leaves the others queued.
func (c *mpClient) nextMatching(match func(*hubproto.Message) bool) hubproto.Message {
	c.t.Helper()
	for i := 0; ; i++ {
		for ; i < len(c.pending); i++ {
			if m := c.pending[i]; match(&m) {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				return m
			}
		}
		f := c.frame()
		if f.kind != websocket.BinaryMessage {
			c.t.Fatalf("frame: got kind %d %q (%v), want binary", f.kind, f.data, f.err)
		}
		msgs, n, err := hubproto.MessagePack{}.Parse(f.data, 0)
		if err != nil || n != len(f.data) {
			c.t.Fatalf("parse % x: %d of %d bytes, %v", f.data, n, len(f.data), err)
		}
		c.pending = append(c.pending, msgs...)
		i--
	}
}

// fidelityValues are MessagePack values JSON cannot carry, each with its
// documented JSON form (docs/signalr.md).
var fidelityValues = []struct{ name, mp, json string }{
	{"bin [1,2]", "c4 02 01 02", `"AQI="`},
	{"timestamp 32", "d6 ff 00 00 00 01", `"1970-01-01T00:00:01Z"`},
	{"timestamp 96", "c7 0c ff 1d cd 65 00 00 00 00 00 65 53 f1 00", `"2023-11-14T22:13:20.5Z"`},
	{"integer-key map", "82 01 a1 61 ff a1 62", `{"1":"a","-1":"b"}`},
	{"NaN", "cb 7f f8 00 00 00 00 00 01", `null`},
	{"Infinity", "cb 7f f0 00 00 00 00 00 00", `null`},
	{"-Infinity float32", "ca ff 80 00 00", `null`},
	{"user extension", "d5 07 01 02", `{"type":7,"data":"AQI="}`},
	{"nested", "81 a1 6b 92 c4 01 ff d4 05 2a", `{"k":["/w==",{"type":5,"data":"Kg=="}]}`},
	{"float32", "ca 3f c0 00 00", `1.5`},
	{"uint64", "cf ff ff ff ff ff ff ff ff", `18446744073709551615`},
	{"string", "a2 68 69", `"hi"`},
}

// Between MessagePack clients every value arrives byte for byte as it was
// sent, on plain and stateful connections (whose stream is re-read from
// the log); a JSON client gets the documented JSON form (issue 13, item 5).
func TestMessagePackValuesArriveUnchanged(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(nil))
	sender := ts.openMsgpack("chat", false)
	plain := ts.openMsgpack("chat", false)
	stateful := ts.openMsgpack("chat", true)
	js := ts.openWS("chat", "")

	args := []hubproto.RawValue{hubproto.MsgpackValue([]byte{0xa4, 'r', 'e', 'c', 'v'})}
	var wantJSON []string
	for _, v := range fidelityValues {
		b, err := hex.DecodeString(strings.ReplaceAll(v.mp, " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		args = append(args, hubproto.MsgpackValue(b))
		wantJSON = append(wantJSON, v.json)
	}
	want := hubproto.AppendMsgpackArray(nil, args[1:])
	sender.send(&hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "SendToAll", Arguments: args})

	for name, c := range map[string]*mpClient{"sender": sender, "plain": plain, "stateful": stateful} {
		m := c.nextInvocation("recv")
		if got := hubproto.AppendMsgpackArray(nil, m.Arguments); !bytes.Equal(got, want) {
			for i := range m.Arguments {
				if i < len(args)-1 && !bytes.Equal(m.Arguments[i].Data, args[i+1].Data) {
					t.Errorf("%s: %s: got % x, want % x", name, fidelityValues[i].name, m.Arguments[i].Data, args[i+1].Data)
				}
			}
			t.Fatalf("%s: arguments\n got % x\nwant % x", name, got, want)
		}
	}
	r := js.next()
	if r.Target != "recv" || len(r.Arguments) != len(wantJSON) {
		t.Fatalf("JSON client: got %s, want recv with %d arguments", r.raw, len(wantJSON))
	}
	for i, a := range r.Arguments {
		var compact bytes.Buffer
		if err := json.Compact(&compact, a); err != nil {
			t.Fatalf("JSON client: argument %d: %v", i, err)
		}
		mustEqual(t, "JSON form of "+fidelityValues[i].name, compact.String(), wantJSON[i])
	}
	// The sender's completion carries the index, as for JSON senders.
	if c := sender.completion("1"); c.Error != "" || !c.HasResult {
		t.Fatalf("completion: got %+v, want a result", c)
	}
}

// A JSON sender's arguments still reach a MessagePack client through the
// JSON-to-MessagePack conversion.
func TestJSONSenderToMessagePackClient(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	mp := ts.openMsgpack("chat", false)
	js := ts.openWS("chat", "")
	js.write(invocation("", "SendToAll", "recv", 1, "a", map[string]any{"k": []any{true, nil}}))
	m := mp.nextInvocation("recv")
	got := hubproto.AppendMsgpackArray(nil, m.Arguments)
	want := []byte{0x93, 0x01, 0xa1, 'a', 0x81, 0xa1, 'k', 0x92, 0xc3, 0xc0}
	if !bytes.Equal(got, want) {
		t.Fatalf("arguments: got % x, want % x", got, want)
	}
}

// A publish as the previous version wrote it (no MessagePack arguments:
// the bytes of fsm's golden test, to hub "chat", audience groups g1 and
// g2, excluding c1) still applies and reaches MessagePack and JSON
// clients with its JSON arguments.
func TestOldPublishEntryDelivers(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions(nil))
	mp := ts.openMsgpack("chat", false)
	js := ts.openWS("chat", "")
	mp.send(&hubproto.Message{Type: hubproto.Invocation, InvocationID: "1", Target: "JoinGroup",
		Arguments: []hubproto.RawValue{hubproto.MsgpackValue([]byte{0xa2, 'g', '1'})}})
	if c := mp.completion("1"); c.Error != "" {
		t.Fatalf("JoinGroup: %s", c.Error)
	}
	if r := js.invoke("1", "JoinGroup", "g2"); r.Error != "" {
		t.Fatalf("JoinGroup: %s", r.raw)
	}
	old, err := hex.DecodeString("01" + "0463686174" + "02" + "02" + "026731" + "026732" + "01" + "026331" +
		"0472656376" + "035b315d" + "016b")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ts.cluster.Propose(t.Context(), []fsm.Command{old})
	if err != nil || res[0].Err != nil {
		t.Fatalf("old publish: got %v, %v, want it applied", err, resultErr(res))
	}
	m := mp.nextInvocation("recv")
	if got := hubproto.AppendMsgpackArray(nil, m.Arguments); !bytes.Equal(got, []byte{0x91, 0x01}) {
		t.Fatalf("MessagePack client: got arguments % x, want 91 01", got)
	}
	if r := js.next(); r.Target != "recv" || len(r.Arguments) != 1 || string(r.Arguments[0]) != "1" {
		t.Fatalf("JSON client: got %s, want recv [1]", r.raw)
	}
}

// sendAll has c invoke SendToAll("recv", values...) with MessagePack values
// given in hex, and returns the arguments array the recipients must get.
func (c *mpClient) sendAll(id string, values ...string) []byte {
	c.t.Helper()
	args := []hubproto.RawValue{hubproto.MsgpackValue([]byte{0xa4, 'r', 'e', 'c', 'v'})}
	for _, v := range values {
		b, err := hex.DecodeString(strings.ReplaceAll(v, " ", ""))
		if err != nil {
			c.t.Fatalf("value %q: %v", v, err)
		}
		args = append(args, hubproto.MsgpackValue(b))
	}
	c.send(&hubproto.Message{Type: hubproto.Invocation, InvocationID: id, Target: "SendToAll", Arguments: args})
	return hubproto.AppendMsgpackArray(nil, args[1:])
}

// A stateful MessagePack connection taken over by another node gets its
// replay re-read from the log there: the values are still as sent.
func TestMessagePackStatefulTakeoverReplaysAsSent(t *testing.T) {
	t.Parallel()
	base, a, b := startPair(t, statefulOptions(nil))
	base.setNodeURL("a", closedURL(t)) // a looks dead: b takes over

	c := a.openMsgpack("chat", true)
	sender := b.openMsgpack("chat", false)
	first := sender.sendAll("1", "c4 02 01 02", "82 01 a1 61 ff a1 62")
	if got := hubproto.AppendMsgpackArray(nil, c.nextInvocation("recv").Arguments); !bytes.Equal(got, first) {
		t.Fatalf("first message: got % x, want % x", got, first)
	}
	c.drop()
	a.waitDetached(c.token)
	second := sender.sendAll("2", "d6 ff 00 00 00 01", "cb 7f f8 00 00 00 00 00 01", "d5 07 01 02")
	if done := sender.completion("2"); done.Error != "" {
		t.Fatalf("second send: %s", done.Error)
	}

	w, resp, err := b.dialWS("chat", "id="+url.QueryEscape(c.token), nil)
	if err != nil {
		t.Fatalf("resume on b: got error %v (status %v), want a WebSocket", err, statusOf(resp))
	}
	r := &mpClient{wsClient: w}
	if seq := r.nextMatching(func(m *hubproto.Message) bool { return m.Type == hubproto.Sequence }); seq.SequenceID != 1 {
		t.Fatalf("Sequence from b: got %d, want 1 (nothing was acknowledged)", seq.SequenceID)
	}
	if node, open := base.holder(t, "chat", c.id); node != "b" || !open {
		t.Fatalf("holder after the takeover: got %q (open %v), want b", node, open)
	}
	for i, want := range [][]byte{first, second} {
		if got := hubproto.AppendMsgpackArray(nil, r.nextInvocation("recv").Arguments); !bytes.Equal(got, want) {
			t.Fatalf("replayed message %d: got % x, want % x", i+1, got, want)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/backplane/backplane/transport/hubproto"
)

func TestPayloadValues(t *testing.T) {
	p := newPayload(200)
	now := time.Unix(0, 1700000000123456789)
	vals := p.values([]hubproto.RawValue{hubproto.JSONValue([]byte("1"))}, now, 42, 2, "g", targetMethod)
	rec, err := hubproto.JSON{}.Append(nil, &hubproto.Message{Type: hubproto.Invocation, Target: "SendToGroup", Arguments: vals[1:]})
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Arguments []json.RawMessage }
	if err := json.Unmarshal(rec[:len(rec)-1], &m); err != nil {
		t.Fatalf("not a JSON record: %v: %s", err, rec)
	}
	if len(vals) != 7 || string(vals[0].Data) != "1" {
		t.Errorf("dst's own values lost: %q", vals)
	}
	if string(m.Arguments[0]) != `"g"` || string(m.Arguments[1]) != `"`+targetMethod+`"` {
		t.Errorf("first arguments %s, %s, want the group \"g\" and the target %q", m.Arguments[0], m.Arguments[1], targetMethod)
	}
	// The rest is the REST message's arguments, one by one, 200 bytes as
	// an array.
	var want []json.RawMessage
	if err := json.Unmarshal(p.args(nil, now, 42, 2), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Arguments[2:], want) || len(p.args(nil, now, 42, 2)) != 200 {
		t.Errorf("message arguments %s, want %s (200 bytes)", m.Arguments[2:], want)
	}
	if st, ok := readStamp(vals[3:]); !ok || st.sent != now.UnixNano() || st.seq != 42 || st.origin != 2 {
		t.Errorf("readStamp = %+v, %v", st, ok)
	}
}

func TestRecordsPerFrame(t *testing.T) {
	if got := recordsPerFrame(frameCount{10, 20}, frameCount{14, 84}); got != 16 {
		t.Errorf("got %v, want 16", got)
	}
	if got := recordsPerFrame(frameCount{10, 20}, frameCount{10, 20}); got != 0 {
		t.Errorf("no frames: got %v, want 0", got)
	}
}

// TestClientCountsFrames checks that a client counts each WebSocket
// message once and every record in it.
func TestClientCountsFrames(t *testing.T) {
	rec := func(seq int) []byte {
		return hubproto.AppendInvocationJSON(nil, targetMethod, newPayload(60).args(nil, time.Now(), int64(seq), 0))
	}
	frames := [][]byte{slices.Concat(rec(0), rec(1), rec(2)), rec(3), slices.Concat(rec(4), rec(5))}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for _, f := range frames {
			if err := ws.WriteMessage(websocket.TextMessage, f); err != nil {
				return
			}
		}
		_, _, _ = ws.NextReader() // until the client closes
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := newDeliveryStats()
	c := newHubClient(ws, 0, d.onMessage, nil)
	go c.read(nil)
	defer func() { closeAll([]*hubClient{c}); <-c.closed }()
	if err := poll(context.Background(), 5*time.Second, time.Millisecond, func() (bool, string) {
		return d.delivered.Load() >= 6, fmt.Sprintf("%d of 6 messages delivered", d.delivered.Load())
	}); err != nil {
		t.Fatal(err)
	}
	got := countFrames([]*hubClient{c})
	if got != (frameCount{frames: 3, records: 6}) {
		t.Errorf("counted %+v, want 3 frames and 6 records", got)
	}
	if r := recordsPerFrame(frameCount{}, got); r != 2 {
		t.Errorf("records per frame %v, want 2", r)
	}
}

// TestHandleSkipsInvocations checks that a client without onMessage
// counts the Invocations the server sends (as hubproto encodes them)
// without parsing them, and still parses Completions and Close.
func TestHandleSkipsInvocations(t *testing.T) {
	var got []string
	c := &hubClient{onCompletion: func(_ *hubClient, m *hubproto.Message, _ time.Time) {
		got = append(got, m.InvocationID+"/"+m.Error)
	}}
	inv := hubproto.AppendInvocationJSON(nil, targetMethod, newPayload(60).args(nil, time.Now(), 1, 0))
	done, err := hubproto.JSON{}.Append(nil, &hubproto.Message{Type: hubproto.Completion, InvocationID: "7", Result: hubproto.JSONValue([]byte("42")), HasResult: true})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := hubproto.JSON{}.Append(nil, &hubproto.Message{Type: hubproto.Completion, InvocationID: "8", Error: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	buf := slices.Concat(inv, done, inv, hubproto.JSON{}.PingRecord(), failed, inv[:20])
	records, consumed, err := c.handle(buf)
	if err != nil {
		t.Fatal(err)
	}
	if records != 5 || consumed != len(buf)-20 {
		t.Errorf("records %d, consumed %d: want 5 and %d (the partial record left)", records, consumed, len(buf)-20)
	}
	if !slices.Equal(got, []string{"7/", "8/boom"}) {
		t.Errorf("completions %q, want 7 and 8 (boom)", got)
	}
	closeRec := hubproto.JSON{}.AppendClose(nil, "bye", false)
	if _, _, err := c.handle(slices.Concat(inv, closeRec, done)); err == nil || !strings.Contains(err.Error(), "bye") {
		t.Errorf("Close record: err %v, want the server's close", err)
	}
}

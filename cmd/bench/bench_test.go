package main

import (
	"context"
	"encoding/json"
	"io"
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

func scenarioWith(name string, perEntry, perSec float64) *scenarioResult {
	s := &scenarioResult{Name: name}
	s.add("committed publishes/s", perSec, "msg/s")
	s.add("messages per Raft entry", perEntry, "")
	return s
}

func TestThroughputGroups(t *testing.T) {
	rep := &report{Scenarios: []*scenarioResult{scenarioWith("hifreq", 4.2, 1), scenarioWith("hifreq-ws", 1.1, 1)}}
	want := []perEntryGroup{{4, []string{"hifreq"}}, {1, []string{"hifreq-ws"}}}
	if got := throughputGroups(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("both ran: got %v, want %v", got, want)
	}
	failed := scenarioWith("hifreq", 4, 1)
	failed.Err = "boom"
	rep = &report{Scenarios: []*scenarioResult{failed, scenarioWith("hifreq-ws", 2, 1)}}
	want = []perEntryGroup{{2, []string{"hifreq-ws"}}}
	if got := throughputGroups(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq failed: got %v, want %v", got, want)
	}
	if got := throughputGroups(&report{Scenarios: []*scenarioResult{{Name: "fanout"}}}); got != nil {
		t.Errorf("no throughput scenario: got %v, want none", got)
	}
	want = []perEntryGroup{{1, []string{"hifreq"}}}
	if got := throughputGroups(&report{}); !reflect.DeepEqual(got, want) {
		t.Errorf("baselines only: got %v, want %v", got, want)
	}
}

// versusOf lists the baselines a scenario's committed publishes/s was
// compared with, and the ratios.
func versusOf(t *testing.T, rep *report, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, c := range rep.scenario(name).metric("committed publishes/s").Versus {
		out[c.Baseline] = c.Ratio
	}
	return out
}

func TestFinishComparesEachScenarioWithItsOwnPerEntry(t *testing.T) {
	rep := &report{Scenarios: []*scenarioResult{scenarioWith("hifreq", 4, 1000), scenarioWith("hifreq-ws", 1, 500)}}
	rep.Baselines.Raft = []raftBaseline{
		{For: "hifreq", MsgsPerEntry: 4, Inflight: 256, MsgsPerSec: 2000},
		{For: "hifreq", MsgsPerEntry: 4, Inflight: 16, MsgsPerSec: 4000},
		{For: "hifreq-ws", MsgsPerEntry: 1, Inflight: 256, MsgsPerSec: 250},
		{For: "hifreq-ws", MsgsPerEntry: 1, Inflight: 16, MsgsPerSec: 1000},
	}
	rep.finish()
	want := map[string]float64{"bare Raft at 4 msgs/entry, 256 in flight": 0.5, "bare Raft at 4 msgs/entry, 16 in flight": 0.25}
	if got := versusOf(t, rep, "hifreq"); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq versus %v, want %v", got, want)
	}
	want = map[string]float64{"bare Raft at 1 msgs/entry, 256 in flight": 2, "bare Raft at 1 msgs/entry, 16 in flight": 0.5}
	if got := versusOf(t, rep, "hifreq-ws"); !reflect.DeepEqual(got, want) {
		t.Errorf("hifreq-ws versus %v, want %v", got, want)
	}
}

func TestFinishSharedMeasurement(t *testing.T) {
	rep := &report{Scenarios: []*scenarioResult{scenarioWith("hifreq", 3, 300), scenarioWith("hifreq-ws", 3, 600)}}
	rep.Baselines.Raft = []raftBaseline{{For: "hifreq", AlsoFor: []string{"hifreq-ws"}, MsgsPerEntry: 3, Inflight: 16, MsgsPerSec: 1200}}
	rep.finish()
	label := "bare Raft at 3 msgs/entry, 16 in flight"
	if got := versusOf(t, rep, "hifreq"); !reflect.DeepEqual(got, map[string]float64{label: 0.25}) {
		t.Errorf("hifreq versus %v", got)
	}
	if got := versusOf(t, rep, "hifreq-ws"); !reflect.DeepEqual(got, map[string]float64{label: 0.5}) {
		t.Errorf("hifreq-ws versus %v", got)
	}
	b, err := json.Marshal(rep.Baselines.Raft[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"for":"hifreq","also_for":["hifreq-ws"]`) {
		t.Errorf("JSON does not name both scenarios: %s", b)
	}
}

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
	if !waitFor(context.Background(), 5*time.Second, func() bool { return d.delivered.Load() >= 6 }) {
		t.Fatalf("%d of 6 messages delivered", d.delivered.Load())
	}
	got := countFrames([]*hubClient{c})
	if got != (frameCount{frames: 3, records: 6}) {
		t.Errorf("counted %+v, want 3 frames and 6 records", got)
	}
	if r := recordsPerFrame(frameCount{}, got); r != 2 {
		t.Errorf("records per frame %v, want 2", r)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.fanoutWin != rawQueueDepth || rawQueueDepth != 64 {
		t.Errorf("-fanout-window default %d, want the raw baseline's queue depth 64", cfg.fanoutWin)
	}
	if cfg.wsPipeline != 4 {
		t.Errorf("-ws-pipeline default %d, want 4", cfg.wsPipeline)
	}
	if i := slices.Index(cfg.scenarios, "hifreq-ws"); i < 1 || cfg.scenarios[i-1] != "hifreq" {
		t.Errorf("all = %v: want hifreq-ws right after hifreq", cfg.scenarios)
	}
	for _, bad := range []string{"0", "1025"} {
		if _, err := parseFlags([]string{"-ws-pipeline", bad}, io.Discard); err == nil {
			t.Errorf("-ws-pipeline %s accepted", bad)
		}
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

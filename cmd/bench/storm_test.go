package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSeqCheck(t *testing.T) {
	tests := []struct {
		name                 string
		after                uint64
		ids                  []uint64
		last                 uint64
		gaps, dups           int64
		missed               uint64
		firstContains        string
		received             int64
		wantNoFirstViolation bool
	}{
		{name: "consecutive", after: 10, ids: []uint64{11, 12, 13}, last: 13, received: 3, wantNoFirstViolation: true},
		{name: "nothing", after: 10, last: 10, wantNoFirstViolation: true},
		{name: "first index skipped", after: 10, ids: []uint64{12, 13}, last: 13, gaps: 1, missed: 1, received: 2, firstContains: "index 12 after 10 (1 missing)"},
		{name: "gap across a reconnect", after: 0, ids: []uint64{1, 2, 3, 7, 8}, last: 8, gaps: 1, missed: 3, received: 5, firstContains: "index 7 after 3"},
		{name: "repeat after a reconnect", after: 0, ids: []uint64{1, 2, 3, 3, 4}, last: 4, dups: 1, received: 5, firstContains: "index 3 after 3 (a repeat"},
		{name: "step back", after: 0, ids: []uint64{1, 2, 3, 1, 2, 3, 4}, last: 4, dups: 3, received: 7, firstContains: "index 1 after 3"},
		{name: "gap then repeat", after: 5, ids: []uint64{6, 9, 9, 10}, last: 10, gaps: 1, missed: 2, dups: 1, received: 4, firstContains: "index 9 after 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSeqCheck(tt.after)
			for _, id := range tt.ids {
				s.add(id)
			}
			if s.last != tt.last || s.gaps != tt.gaps || s.dups != tt.dups || s.missed != tt.missed || s.received != tt.received {
				t.Errorf("last %d gaps %d missed %d dups %d received %d, want %d %d %d %d %d",
					s.last, s.gaps, s.missed, s.dups, s.received, tt.last, tt.gaps, tt.missed, tt.dups, tt.received)
			}
			if tt.wantNoFirstViolation != (s.first == "") || !strings.Contains(s.first, tt.firstContains) {
				t.Errorf("first violation %q, want one containing %q", s.first, tt.firstContains)
			}
		})
	}
}

func TestCatchUp(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	kill := at(0)
	type delivery struct {
		ms   int
		last uint64
	}
	tests := []struct {
		name        string
		before      []delivery // delivered before reconnecting
		reconnectMS int
		head        uint64
		after       []delivery
		want        time.Time // zero: never caught up
	}{
		{name: "caught up on the new stream",
			before:      []delivery{{-20, 100}, {-10, 101}},
			reconnectMS: 80, head: 150,
			after: []delivery{{90, 140}, {95, 149}, {97, 150}, {99, 151}},
			want:  at(97)},
		{name: "passing the head counts, not only reaching it",
			before: []delivery{{-10, 101}}, reconnectMS: 80, head: 150,
			after: []delivery{{90, 120}, {95, 160}}, want: at(95)},
		{name: "already at the head when killed: the kill time",
			before: []delivery{{-30, 149}, {-10, 150}}, reconnectMS: 80, head: 150,
			after: []delivery{{90, 151}}, want: kill},
		{name: "reached the head from the dead node's socket after the kill",
			before: []delivery{{-10, 140}, {5, 148}, {7, 150}, {8, 152}}, reconnectMS: 80, head: 150,
			want: at(7)},
		{name: "the dead node's late deliveries fall short",
			before: []delivery{{-10, 140}, {5, 145}}, reconnectMS: 80, head: 150,
			after: []delivery{{85, 150}}, want: at(85)},
		{name: "never caught up",
			before: []delivery{{-10, 140}}, reconnectMS: 80, head: 150,
			after: []delivery{{85, 149}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c catchUp
			for _, d := range tt.before {
				k := kill
				if at(d.ms).Before(kill) {
					k = time.Time{} // the reader does not know of the kill yet
				}
				c.delivered(at(d.ms), d.last, k)
			}
			c.reconnect(at(tt.reconnectMS), tt.head, kill)
			for _, d := range tt.after {
				c.delivered(at(d.ms), d.last, kill)
			}
			if !c.at.Equal(tt.want) {
				t.Errorf("caught up at %v, want %v", c.at.Sub(t0), tt.want.Sub(t0))
			}
			if c.early != nil {
				t.Errorf("early deliveries kept after the reconnection: %v", c.early)
			}
		})
	}
}

func TestReadSSE(t *testing.T) {
	stream := ": backplane stream after 41\nretry: 1000\n\n" +
		"id: 42\ndata: {\"index\":42,\"target\":\"msg\",\"arguments\":[1700000000000000000,0,0,\"xx\"]}\n\n" +
		": ping\n\n" +
		"id: 43\r\ndata: {\"index\":43}\r\n\r\n" +
		"event: reset\ndata: {\"reset\":{\"oldest\":50}}\n\n" +
		"id:50\ndata:{\"index\":50}\n\n"
	type ev struct {
		id   uint64
		data string
	}
	want := []ev{
		{42, `{"index":42,"target":"msg","arguments":[1700000000000000000,0,0,"xx"]}`},
		{43, `{"index":43}`},
		{50, `{"index":50}`},
	}
	var got []ev
	var resets []string
	err := readSSE(bufio.NewReader(strings.NewReader(stream)), func(id uint64, data []byte) {
		got = append(got, ev{id, string(data)})
	}, func(data []byte) { resets = append(resets, string(data)) })
	if err != io.EOF {
		t.Fatalf("err %v, want EOF", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages %v, want %v", got, want)
	}
	if !reflect.DeepEqual(resets, []string{`{"reset":{"oldest":50}}`}) {
		t.Errorf("resets %v", resets)
	}

	for name, bad := range map[string]string{
		"long line":     "id: 1\ndata: " + strings.Repeat("x", 64) + "\n\n",
		"no id":         "data: {}\n\n",
		"bad id":        "id: x\ndata: {}\n\n",
		"unknown event": "event: other\ndata: {}\n\n",
	} {
		err := readSSE(bufio.NewReaderSize(strings.NewReader(bad), 32), func(uint64, []byte) {}, func([]byte) {})
		if !errors.Is(err, errSSEFormat) {
			t.Errorf("%s: err %v, want errSSEFormat", name, err)
		}
	}
}

func TestSentFromData(t *testing.T) {
	p := newPayload(200)
	sent := time.Unix(0, 1_700_000_000_123_456_789)
	body := p.restBody(sent, 7, 1) // {"target":"msg","arguments":[...]}
	data := `{"index":9,` + string(body[1:])
	if v, ok := sentFromData([]byte(data)); !ok || v != sent.UnixNano() {
		t.Errorf("sentFromData(%s) = %d, %v", data, v, ok)
	}
	for _, bad := range []string{`{"index":9}`, `{"arguments":[]}`, `{"arguments":["x",1]}`, `{"arguments":[12`} {
		if _, ok := sentFromData([]byte(bad)); ok {
			t.Errorf("sentFromData(%s) ok", bad)
		}
	}
}

func TestStormReaderProblems(t *testing.T) {
	good := &stormReader{seq: newSeqCheck(10), resumed: true}
	for id := uint64(11); id <= 20; id++ {
		good.seq.add(id)
	}
	if p := good.problems(20); len(p) != 0 {
		t.Errorf("a clean reader has problems: %v", p)
	}
	if p := good.problems(21); len(p) != 1 || !strings.Contains(p[0], "ended at index 20, the last committed index is 21") {
		t.Errorf("short reader: %v", p)
	}
	bad := &stormReader{seq: newSeqCheck(10), resets: 1, formatErr: "x"}
	for _, id := range []uint64{11, 13, 13, 14} {
		bad.seq.add(id)
	}
	p := strings.Join(bad.problems(14), "; ")
	for _, want := range []string{"1 gap(s), 1 index(es) missing", "1 duplicate(s)", "first: index 13 after 11", "1 reset event(s)",
		"stream format: x", "never reconnected"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems %q lack %q", p, want)
		}
	}
}

func TestParseFlagsStorm(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.scenarios[len(cfg.scenarios)-1] != "storm" || cfg.stormReaders != 500 || cfg.stormRate != 500 {
		t.Errorf("all = %v, readers %d, rate %v: want storm last, 500, 500", cfg.scenarios, cfg.stormReaders, cfg.stormRate)
	}
	cfg, err = parseFlags([]string{"-scenario", "storm,idle,storm,broadcast"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"idle", "broadcast", "storm"}; !reflect.DeepEqual(cfg.scenarios, want) {
		t.Errorf("scenarios %v, want %v", cfg.scenarios, want)
	}
	var stderr strings.Builder
	cfg, err = parseFlags([]string{"-targets", "127.0.0.1:8080", "-scenario", "all"}, &stderr)
	if err != nil || slices.Contains(cfg.scenarios, "storm") || !strings.Contains(stderr.String(), "skipping storm: storm needs a local cluster: it kills a node") {
		t.Errorf("all on -targets: %v, %v, stderr %q: want storm skipped with the reason", cfg.scenarios, err, stderr.String())
	}
	if _, err := parseFlags([]string{"-targets", "127.0.0.1:8080", "-scenario", "idle,storm"}, io.Discard); !errors.Is(err, errStormRemote) {
		t.Errorf("storm on -targets: %v, want %v", err, errStormRemote)
	}
	for _, args := range [][]string{{"-storm-readers", "0"}, {"-storm-rate", "0"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestStormNeedsLocalCluster(t *testing.T) {
	b := &bench{cl: &cluster{nodes: []*benchNode{{id: "target1", url: "http://127.0.0.1:1"}}}}
	err := b.storm(context.Background(), &scenarioResult{Name: "storm"})
	if err == nil || !strings.Contains(err.Error(), "storm needs a local cluster: it kills a node") {
		t.Errorf("storm on a remote cluster: %v", err)
	}
}

// TestKillNodeThenStop kills one of two local processes; stop must pass
// over it, end the other and remove the temp dir.
func TestKillNodeThenStop(t *testing.T) {
	dir := t.TempDir() + "/cluster"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir}
	for _, id := range []string{"a", "b"} {
		n := &benchNode{id: id, cmd: exec.Command("sleep", "60"), exited: make(chan struct{})}
		if err := n.cmd.Start(); err != nil {
			t.Skipf("no sleep command: %v", err)
		}
		go func() {
			_ = n.cmd.Wait()
			close(n.exited)
		}()
		c.nodes = append(c.nodes, n)
	}
	defer c.kill()
	if err := c.killNode(0); err != nil {
		t.Fatal(err)
	}
	if !c.nodes[0].dead() || c.nodes[1].dead() {
		t.Fatalf("dead: %v %v, want true false", c.nodes[0].dead(), c.nodes[1].dead())
	}
	if err := c.killNode(0); err != nil {
		t.Errorf("killing a dead node again: %v", err)
	}
	c.stop(t.Logf)
	if !c.nodes[1].dead() {
		t.Error("stop left the live node running")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir still there: %v", err)
	}
}

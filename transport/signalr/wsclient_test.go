package signalr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsFrame is one WebSocket message, or the error that ended reading.
type wsFrame struct {
	kind int
	data []byte
	err  error
}

// wsClient is a hand-driven WebSocket SignalR client. A goroutine reads
// frames into a channel, so waits never poison the connection.
type wsClient struct {
	t      *testing.T
	name   string
	conn   *websocket.Conn
	frames chan wsFrame
	buf    string   // bytes of a partial record
	queue  []record // complete records not yet returned
	id     string   // connection id (empty with skipNegotiation)
	token  string
}

// dialWS upgrades to the hub with the query; it returns the response on
// failure.
func (ts *testServer) dialWS(hub, query string, hdr http.Header) (*wsClient, *http.Response, error) {
	ts.t.Helper()
	dialer := &websocket.Dialer{HandshakeTimeout: waitTimeout}
	u := "ws" + strings.TrimPrefix(ts.hubURL(hub, query), "http")
	conn, resp, err := dialer.Dial(u, hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: ts.t, name: hub + "?" + query, conn: conn, frames: make(chan wsFrame, 1024)}
	go func() {
		defer close(c.frames)
		for {
			kind, data, err := conn.ReadMessage()
			c.frames <- wsFrame{kind: kind, data: data, err: err}
			if err != nil {
				return
			}
		}
	}()
	ts.t.Cleanup(func() { _ = conn.Close() })
	return c, resp, nil
}

// openWS negotiates on hub (extra query for negotiate and the upgrade),
// upgrades and completes a JSON handshake.
func (ts *testServer) openWS(hub, extra string) *wsClient {
	ts.t.Helper()
	n := ts.negotiate(hub, extra)
	q := "id=" + url.QueryEscape(n.ConnectionToken)
	if extra != "" {
		q += "&" + extra
	}
	c, resp, err := ts.dialWS(hub, q, nil)
	if err != nil {
		ts.t.Fatalf("upgrade %s: got error %v (status %v), want a WebSocket", hub, err, statusOf(resp))
	}
	c.id, c.token = n.ConnectionID, n.ConnectionToken
	c.handshake()
	return c
}

func statusOf(resp *http.Response) any {
	if resp == nil {
		return "none"
	}
	return resp.StatusCode
}

// handshake sends the JSON handshake and wants {} first.
func (c *wsClient) handshake() {
	c.t.Helper()
	c.write(handshakeJSON)
	f := c.frame()
	if f.kind != websocket.TextMessage || string(f.data) != "{}"+rs {
		c.t.Fatalf("%s handshake: got frame kind %d %q, want text %q", c.name, f.kind, f.data, "{}"+rs)
	}
}

func (c *wsClient) write(data string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(data)); err != nil {
		c.t.Fatalf("%s write: got error %v, want nil", c.name, err)
	}
}

// frame returns the next WebSocket message.
func (c *wsClient) frame() wsFrame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok || f.err != nil {
			c.t.Fatalf("%s: got read error %v, want a frame", c.name, f.err)
		}
		return f
	case <-time.After(waitTimeout):
		c.t.Fatalf("%s: got no frame in %s, want one", c.name, waitTimeout)
	}
	return wsFrame{}
}

// next returns the next record, skipping keep-alive Pings.
func (c *wsClient) next() record {
	c.t.Helper()
	for {
		r := c.nextAny()
		if r.Type != 6 {
			return r
		}
	}
}

// nextAny returns the next record, Pings included.
func (c *wsClient) nextAny() record {
	c.t.Helper()
	for len(c.queue) == 0 {
		if i := strings.LastIndex(c.buf, rs); i >= 0 {
			for _, raw := range splitRecords(c.t, c.buf[:i+1]) {
				c.queue = append(c.queue, parseRecord(c.t, raw))
			}
			c.buf = c.buf[i+1:]
			continue
		}
		f := c.frame()
		if f.kind != websocket.TextMessage {
			c.t.Fatalf("%s: got frame kind %d, want text", c.name, f.kind)
		}
		c.buf += string(f.data)
	}
	r := c.queue[0]
	c.queue = c.queue[1:]
	return r
}

// invoke calls a hub method and returns its Completion. Records that
// arrive first stay queued for next.
func (c *wsClient) invoke(id, target string, args ...any) record {
	c.t.Helper()
	c.write(invocation(id, target, args...))
	return c.completion(id)
}

// completion waits for the Completion of id, keeping other records.
func (c *wsClient) completion(id string) record {
	c.t.Helper()
	var kept []record
	defer func() { c.queue = append(kept, c.queue...) }()
	for {
		r := c.next()
		if r.Type == 3 && r.InvocationID == id {
			return r
		}
		if r.Type == 3 {
			c.t.Fatalf("%s: got Completion %s, want only the one of %q", c.name, r.raw, id)
		}
		kept = append(kept, r)
	}
}

// deliveries returns the targets of the Invocations received up to the
// marker, which every client receives after the message under test.
func (c *wsClient) deliveries(marker string) []string {
	c.t.Helper()
	var got []string
	for {
		r := c.next()
		if r.Type != 1 {
			c.t.Fatalf("%s: got %s, want Invocations up to %q", c.name, r.raw, marker)
		}
		if r.Target == marker {
			return got
		}
		got = append(got, r.Target)
	}
}

// closed waits until the server closed the socket and returns the
// records received before the close.
func (c *wsClient) closed() []record {
	c.t.Helper()
	var got []record
	deadline := time.After(waitTimeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok || f.err != nil {
				for len(c.queue) > 0 {
					got = append(got, c.queue[0])
					c.queue = c.queue[1:]
				}
				return got
			}
			for _, raw := range splitRecords(c.t, c.buf+string(f.data)) {
				if r := parseRecord(c.t, raw); r.Type != 6 {
					got = append(got, r)
				}
			}
			c.buf = ""
		case <-deadline:
			c.t.Fatalf("%s: socket still open after %s, want it closed", c.name, waitTimeout)
		}
	}
}

// wantClose wants the connection to end with exactly one final Close
// record matching want.
func wantClose(t *testing.T, name string, got []record, wantErr bool, wantReconnect bool) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s: got no record before the close, want a Close", name)
	}
	last := got[len(got)-1]
	if last.Type != 7 || (last.Error != "") != wantErr || last.AllowReconnect != wantReconnect {
		t.Fatalf("%s: got last record %s, want a Close with error=%v allowReconnect=%v", name, last.raw, wantErr, wantReconnect)
	}
}

func sprintArgs(args []json.RawMessage) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = string(a)
	}
	return fmt.Sprintf("[%s]", strings.Join(parts, ","))
}

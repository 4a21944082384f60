package signalr2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/backplane/backplane/fsm"
)

// The cursor. The envelope's "C" (the client's messageId) is a message
// index of the replicated log, written in decimal: the connection has
// received every message addressed to it up to that index. Clients treat
// it as opaque and send it back unchanged.

// errBadCursor: a messageId that is not a message index.
var errBadCursor = errors.New("bad messageId")

// formatCursor writes a cursor.
func formatCursor(index uint64) string { return strconv.FormatUint(index, 10) }

// parseCursor reads a messageId.
func parseCursor(s string) (uint64, error) {
	if s == "" || len(s) > 20 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w %q: a Backplane messageId is a decimal message index", errBadCursor, truncate(s, 40))
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %v", errBadCursor, truncate(s, 40), err)
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// envelope is the persistent response the server writes: {"C","M"} always
// (M even as []), "S":1 on the init response of /connect, "G" when the
// connection's groups changed, and "E" for an error that stops the client.
type envelope struct {
	Cursor   uint64
	Messages []fsm.Message
	Init     bool
	// Reconnect ("T":1): the node shuts down, reconnect (to another).
	Reconnect bool
	Groups    string // groups token; "" when unchanged
	Error     string // a global error: the client stops
}

// append writes e as JSON.
func (e *envelope) append(b []byte) []byte {
	b = append(b, `{"C":"`...)
	b = strconv.AppendUint(b, e.Cursor, 10)
	b = append(b, `"`...)
	if e.Init {
		b = append(b, `,"S":1`...)
	}
	if e.Reconnect {
		b = append(b, `,"T":1`...)
	}
	if e.Groups != "" {
		b = append(b, `,"G":`...)
		b = appendString(b, e.Groups)
	}
	if e.Error != "" {
		b = append(b, `,"E":`...)
		b = appendString(b, e.Error)
	}
	b = append(b, `,"M":[`...)
	for i := range e.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInvocation(b, &e.Messages[i])
	}
	return append(b, "]}"...)
}

// appendInvocation writes a client method call: {"H":hub,"M":target,"A":args}.
func appendInvocation(b []byte, m *fsm.Message) []byte {
	b = append(b, `{"H":`...)
	b = appendString(b, m.Hub)
	b = append(b, `,"M":`...)
	b = appendString(b, m.Target)
	b = append(b, `,"A":`...)
	args := bytes.TrimSpace(m.Arguments)
	if len(args) == 0 {
		args = []byte("[]")
	}
	b = append(b, args...)
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string: cannot fail
	return append(b, q...)
}

// hubInvocation is what a client sends to invoke a hub method:
// {"H":"chathub","M":"Send","A":[…],"I":0,"S":{…}}. I is a number from
// the jQuery client and a string from the .NET client.
type hubInvocation struct {
	Hub    string            `json:"H"`
	Method string            `json:"M"`
	Args   []json.RawMessage `json:"A"`
	ID     json.RawMessage   `json:"I"`
	State  json.RawMessage   `json:"S"`
}

// errBadInvocation: a /send body or WebSocket frame that is not a hub
// invocation.
var errBadInvocation = errors.New("bad hub invocation")

// maxStateLen is the proxy state a client may send, as in ASP.NET.
const maxStateLen = 4096

// parseInvocation reads a hub invocation and returns it with its id as a
// string.
func parseInvocation(data []byte) (*hubInvocation, string, error) {
	var inv hubInvocation
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&inv); err != nil {
		return nil, "", fmt.Errorf("%w: %v", errBadInvocation, err)
	}
	if dec.More() {
		return nil, "", fmt.Errorf("%w: data after the invocation", errBadInvocation)
	}
	id, err := invocationID(inv.ID)
	if err != nil {
		return nil, "", err
	}
	if inv.Hub == "" || inv.Method == "" {
		return nil, id, fmt.Errorf("%w: H (the hub) and M (the method) are required", errBadInvocation)
	}
	if len(inv.State) > maxStateLen {
		return nil, id, fmt.Errorf("%w: the hub state is longer than %d characters", errBadInvocation, maxStateLen)
	}
	return &inv, id, nil
}

// invocationID reads I: a number or a string, at most 64 characters.
func invocationID(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", fmt.Errorf("%w: I (the invocation id) is required", errBadInvocation)
	}
	var id string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", fmt.Errorf("%w: I: %v", errBadInvocation, err)
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", fmt.Errorf("%w: I must be a number or a string", errBadInvocation)
		}
		id = n.String()
	}
	if id == "" || len(id) > 64 {
		return "", fmt.Errorf("%w: I must be 1 to 64 characters", errBadInvocation)
	}
	return id, nil
}

// hubResponse answers an invocation: {"I":"0","R":…} or, on error,
// {"I":"0","E":"msg","H":true} (H marks the error as the hub's own, so
// the client shows its message, as with a HubException). R is left out
// for a method without a result.
type hubResponse struct {
	ID       string          `json:"I"`
	Result   json.RawMessage `json:"R,omitempty"`
	Error    string          `json:"E,omitempty"`
	HubError bool            `json:"H,omitempty"`
}

func (h *hubResponse) marshal() []byte {
	b, err := json.Marshal(h)
	if err != nil { // a Result or State that is not JSON: cannot happen, they come from json
		b, _ = json.Marshal(hubResponse{ID: h.ID, Error: "could not encode the result"})
	}
	return b
}

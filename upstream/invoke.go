package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// Content types of the bodies.
const (
	contentJSON    = "application/json"
	contentMsgpack = "application/x-msgpack"
)

// Invoke implements signalr.Application: it POSTs messages/<target> with
// the client's invocation, unframed, in the client's protocol, and turns
// the answer into the completion (see docs/upstream.md). Messages are sent
// once: a failure is the invocation's error, never retried.
func (u *Upstream) Invoke(ctx context.Context, call *signalr.Call) signalr.Completion {
	m := call.Message
	if m.Type != hubproto.Invocation {
		return signalr.Completion{Error: "Stream invocations are not supported by the upstream (as in Azure SignalR serverless mode)."}
	}
	if len(m.StreamIDs) > 0 {
		return signalr.Completion{Error: "Client-to-server streams are not supported by the upstream (as in Azure SignalR serverless mode)."}
	}
	c := call.Conn
	target := find(u.cfg.Rules, c.Hub, CategoryMessages, m.Target)
	if target == "" {
		return signalr.Completion{Error: fmt.Sprintf("Invocation failed: no upstream is configured for hub %q, method %q.", c.Hub, m.Target)}
	}
	body, ctype, err := encodeInvocation(call.Protocol, m)
	if err != nil {
		u.log.Warn("cannot encode an invocation for the upstream", "hub", c.Hub, "conn", c.ID, "target", m.Target, "err", err)
		return signalr.Completion{Error: "Invocation failed: its arguments could not be encoded."}
	}
	ans, err := u.post(ctx, request{url: target, c: &c, category: CategoryMessages, event: m.Target, contentType: ctype, body: body})
	if err != nil {
		u.log.Warn("upstream invocation failed", "hub", c.Hub, "conn", c.ID, "target", m.Target, "err", err)
		return signalr.Completion{Error: "Invocation failed: " + err.Error()}
	}
	if !ans.ok() {
		u.log.Info("upstream answered an invocation with an error status", "hub", c.Hub, "conn", c.ID, "target", m.Target, "status", ans.status)
		return signalr.Completion{Error: fmt.Sprintf("Invocation failed, status code %d", ans.status)}
	}
	if m.InvocationID == "" || len(bytes.TrimSpace(ans.body)) == 0 {
		return signalr.Completion{}
	}
	comp, err := parseCompletion(call.Protocol, ans.body)
	if err != nil {
		u.log.Warn("upstream answered an invocation with a bad body", "hub", c.Hub, "conn", c.ID, "target", m.Target, "err", err)
		return signalr.Completion{Error: "Invocation failed: the upstream's answer is not a completion message: " + err.Error()}
	}
	return comp
}

// encodeInvocation encodes m in p without framing, as Azure sends it.
func encodeInvocation(p hubproto.Protocol, m *hubproto.Message) (body []byte, contentType string, err error) {
	framed, err := p.Append(nil, m)
	if err != nil {
		return nil, "", err
	}
	if p.Name() == hubproto.NameMessagePack {
		n, err := varintLen(framed)
		if err != nil {
			return nil, "", err
		}
		return framed[n:], contentMsgpack, nil
	}
	return bytes.TrimSuffix(framed, []byte{0x1e}), contentJSON, nil
}

// varintLen returns the length of a MessagePack record's length prefix.
func varintLen(b []byte) (int, error) {
	for i := 0; i < len(b) && i < 5; i++ {
		if b[i]&0x80 == 0 {
			return i + 1, nil
		}
	}
	return 0, errors.New("bad messagepack length prefix")
}

// parseCompletion reads the answer to an invocation: one framed
// Completion message in the client's protocol (a JSON answer without the
// trailing record separator is accepted too).
func parseCompletion(p hubproto.Protocol, body []byte) (signalr.Completion, error) {
	if p.Name() == hubproto.NameJSON {
		body = bytes.TrimRight(body, " \t\r\n")
		if len(body) > 0 && body[len(body)-1] != 0x1e {
			body = append(body, 0x1e)
		}
	}
	msgs, consumed, err := p.Parse(body, 0)
	if err != nil {
		return signalr.Completion{}, err
	}
	if consumed != len(body) || len(msgs) != 1 {
		return signalr.Completion{}, fmt.Errorf("want exactly one framed message, got %d and %d stray bytes", len(msgs), len(body)-consumed)
	}
	m := msgs[0]
	if m.Type != hubproto.Completion {
		return signalr.Completion{}, fmt.Errorf("got a %s message", m.Type)
	}
	if m.Error != "" {
		return signalr.Completion{Error: m.Error}, nil
	}
	return signalr.Completion{Result: m.Result, HasResult: m.HasResult}, nil
}

// connectBody is the JSON body of the optional connect event.
type connectBody struct {
	UserID string            `json:"userId,omitempty"`
	Claims map[string]string `json:"claims,omitempty"`
	Query  map[string]string `json:"query,omitempty"`
}

// connectAnswer is what a 2xx answer to the connect event may set.
type connectAnswer struct {
	UserID string   `json:"userId"`
	Groups []string `json:"groups"`
}

// Connect implements signalr.Application. Without Config.ConnectEvent it
// admits every connection, as Azure does. With it, it POSTs
// connections/connect and waits: 2xx admits (a JSON answer may set userId
// and groups), 401 or 403 refuse with that status, anything else refuses
// with 500.
func (u *Upstream) Connect(ctx context.Context, c *signalr.ConnInfo) (signalr.Admission, error) {
	if !u.cfg.ConnectEvent {
		return signalr.Admission{}, nil
	}
	target := find(u.cfg.Rules, c.Hub, CategoryConnections, EventConnect)
	if target == "" {
		return signalr.Admission{}, nil
	}
	b := connectBody{UserID: c.UserID}
	if len(c.Claims) > 0 {
		b.Claims = map[string]string{}
		for _, cl := range c.Claims {
			if _, dup := b.Claims[cl.Type]; !dup {
				b.Claims[cl.Type] = cl.Value
			}
		}
	}
	if len(c.Query) > 0 {
		b.Query = map[string]string{}
		for k, v := range c.Query {
			b.Query[k] = strings.Join(v, ",")
		}
	}
	body, err := json.Marshal(b)
	if err != nil {
		return signalr.Admission{}, fmt.Errorf("upstream connect event: %w", err)
	}
	ans, err := u.post(ctx, request{url: target, c: c, category: CategoryConnections, event: EventConnect, contentType: contentJSON, body: body})
	if err != nil {
		return signalr.Admission{}, fmt.Errorf("upstream connect event: %w", err)
	}
	switch {
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		msg := strings.TrimSpace(string(ans.body))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return signalr.Admission{}, &signalr.Refusal{Status: ans.status, Message: msg}
	case !ans.ok():
		return signalr.Admission{}, fmt.Errorf("upstream connect event: status %d", ans.status)
	}
	var a connectAnswer
	if len(bytes.TrimSpace(ans.body)) > 0 {
		if err := json.Unmarshal(ans.body, &a); err != nil {
			return signalr.Admission{}, fmt.Errorf("upstream connect event: the answer is not {\"userId\",\"groups\"} JSON: %w", err)
		}
	}
	return signalr.Admission{UserID: a.UserID, Groups: a.Groups}, nil
}

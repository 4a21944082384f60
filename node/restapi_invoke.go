package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/signalr"
)

// Client results and streams over the versioned REST API (2024-12-01):
//
//	POST /api/hubs/{hub}/connections/{connectionId}/:invoke
//	POST /api/hubs/{hub}/connections/{connectionId}/streams/{streamId}/:send
//	POST /api/hubs/{hub}/connections/{connectionId}/streams/{streamId}/:complete
//
// The node that receives the call finds the connection's holder in the
// replicated connection record and, when that is another node, hands the
// call to it over the peer client (clientCallPath, members only). The
// holder's SignalR server talks to the client (transport/signalr's
// clientresult.go). None of it is written to the log: an invocation is a
// request and an answer between the caller and one client, as ASP.NET
// Core's client results are, and a stream's items go to the one
// connection in the order the caller sends them.

// clientCallPath is the node-to-node route on which a node asks a
// connection's holder to invoke it or to stream to it.
const clientCallPath = "/internal/v1/signalr/client"

// DefaultClientInvokeTimeout is how long :invoke waits for the client's
// answer unless the call names a shorter or longer timeout (the
// Backplane-only query parameter timeout, in seconds, 1 to
// maxClientInvokeTimeout): 30 s, ASP.NET Core's default client timeout.
const DefaultClientInvokeTimeout = 30 * time.Second

const maxClientInvokeTimeout = 5 * time.Minute

// The operations of a client call.
const (
	clientOpInvoke         = "invoke"
	clientOpStreamItem     = "stream-item"
	clientOpStreamComplete = "stream-complete"
)

// clientCall is one call for a connection, as the holder receives it.
type clientCall struct {
	Op        string          `json:"op"`
	Hub       string          `json:"hub"`
	ConnID    string          `json:"connectionId"`
	Target    string          `json:"target,omitempty"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	StreamID  string          `json:"streamId,omitempty"`
	Item      json.RawMessage `json:"item,omitempty"`
	Complete  bool            `json:"complete,omitempty"` // a Completion after the item
	Reason    string          `json:"reason,omitempty"`   // the Completion's error
	TimeoutMS int64           `json:"timeoutMs,omitempty"`
}

// clientAnswer is a client call's outcome: the status and body the REST
// caller gets, and the ErrorDetail code of an error.
type clientAnswer struct {
	status int
	code   string
	body   []byte // JSON
}

// clientErrorCodeHeader carries an error answer's ErrorDetail code from
// the holder.
const clientErrorCodeHeader = "Backplane-Error-Code"

func answerError(status int, code, msg string) clientAnswer {
	b, _ := json.Marshal(map[string]string{"error": msg}) // a string map always marshals
	return clientAnswer{status: status, code: code, body: b}
}

// apiInvoke serves POST .../connections/{connectionId}/:invoke.
func (n *Node) apiInvoke(w http.ResponseWriter, r *http.Request) {
	call := clientCall{Op: clientOpInvoke, Hub: r.PathValue("hub"), ConnID: r.PathValue("connectionId")}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxRESTBody))
	if err != nil {
		writeError(w, r, err)
		return
	}
	var body sendBody
	if err := json.Unmarshal(raw, &body); err != nil {
		writeError(w, r, errBadRequestf("malformed JSON body: %v", err))
		return
	}
	if call.Arguments, err = sendArguments(body.Arguments); err != nil {
		writeError(w, r, err)
		return
	}
	call.Target = body.Target
	if call.Target == "" || len(call.Target) > fsm.MaxTargetLen {
		writeError(w, r, errBadRequestf("target must be 1 to %d bytes", fsm.MaxTargetLen))
		return
	}
	timeout := DefaultClientInvokeTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxClientInvokeTimeout {
			writeError(w, r, errBadRequestf("timeout must be a whole number of seconds from 1 to %d", int(maxClientInvokeTimeout/time.Second)))
			return
		}
		timeout = time.Duration(secs) * time.Second
	}
	call.TimeoutMS = timeout.Milliseconds()
	n.clientCall(w, r, &call)
}

// apiStreamSend serves POST .../streams/{streamId}/:send: the body is the
// item, one JSON value; completed=true ends the stream after it.
func (n *Node) apiStreamSend(w http.ResponseWriter, r *http.Request) {
	call := clientCall{Op: clientOpStreamItem, Hub: r.PathValue("hub"), ConnID: r.PathValue("connectionId"), StreamID: r.PathValue("streamId")}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxRESTBody))
	if err != nil {
		writeError(w, r, err)
		return
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !json.Valid(raw) {
		writeError(w, r, errBadRequestf("the body must be the stream item, one JSON value"))
		return
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, raw) // valid JSON always compacts
	call.Item = compact.Bytes()
	if v := r.URL.Query().Get("completed"); v != "" {
		done, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, r, errBadRequestf("completed must be true or false"))
			return
		}
		call.Complete = done
	}
	n.clientCall(w, r, &call)
}

// apiStreamComplete serves POST .../streams/{streamId}/:complete; reason
// is the Completion's error.
func (n *Node) apiStreamComplete(w http.ResponseWriter, r *http.Request) {
	call := clientCall{Op: clientOpStreamComplete, Hub: r.PathValue("hub"), ConnID: r.PathValue("connectionId"),
		StreamID: r.PathValue("streamId"), Reason: r.URL.Query().Get("reason")}
	n.clientCall(w, r, &call)
}

// maxStreamIDLen bounds a stream id (an invocation id on the client).
const maxStreamIDLen = 256

// clientCall checks a call, finds the connection's holder and has it
// served there, then writes the answer.
func (n *Node) clientCall(w http.ResponseWriter, r *http.Request, call *clientCall) {
	if err := fsm.ValidateHub(call.Hub); err != nil {
		writeError(w, r, err)
		return
	}
	if err := fsm.ValidateName("connection", call.ConnID); err != nil {
		writeError(w, r, err)
		return
	}
	if call.Op != clientOpInvoke && (call.StreamID == "" || len(call.StreamID) > maxStreamIDLen) {
		writeError(w, r, errBadRequestf("the stream id must be 1 to %d bytes", maxStreamIDLen))
		return
	}
	rec, ok, err := n.fsm.Connection(call.Hub, call.ConnID)
	if err == nil && !ok {
		err = errNotFoundf("connection %q is not connected to hub %q", call.ConnID, call.Hub)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	var a clientAnswer
	if rec.NodeID == n.cfg.ID {
		a = n.serveClientCall(r.Context(), call)
	} else {
		a = n.forwardClientCall(r.Context(), rec.NodeID, call)
	}
	writeClientAnswer(w, a)
}

func writeClientAnswer(w http.ResponseWriter, a clientAnswer) {
	if a.status >= 400 {
		setErrorCode(w, a.code)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body) // fails only when the caller went away
}

// forwardClientCall hands the call to the holder and returns its answer.
func (n *Node) forwardClientCall(ctx context.Context, holder string, call *clientCall) clientAnswer {
	info, ok, err := n.fsm.Node(holder)
	if err != nil || !ok || info.HTTPAddr == "" {
		return answerError(http.StatusNotFound, "NotFound", fmt.Sprintf("connection %q is held by node %q, which is not a member", call.ConnID, holder))
	}
	body, err := json.Marshal(call)
	if err != nil {
		return answerError(http.StatusInternalServerError, "", fmt.Sprintf("encode client call: %v", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.fwd.url(info.HTTPAddr)+clientCallPath, nil)
	if err != nil {
		return answerError(http.StatusInternalServerError, "", fmt.Sprintf("client call to %s: %v", holder, err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.fwd.do(req, body)
	if err != nil {
		n.log.Debug("client call to holder failed", "holder", holder, "err", err)
		return answerError(http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("the node holding connection %q cannot be reached: %v", call.ConnID, err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		return answerError(http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("read the holder's answer: %v", err))
	}
	if !json.Valid(out) {
		return answerError(http.StatusBadGateway, "", fmt.Sprintf("the holder answered %d without JSON", resp.StatusCode))
	}
	return clientAnswer{status: resp.StatusCode, code: resp.Header.Get(clientErrorCodeHeader), body: out}
}

// handleClientCall serves clientCallPath: a call another node received
// for a connection this node holds.
func (n *Node) handleClientCall(w http.ResponseWriter, r *http.Request) {
	var call clientCall
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
	if err == nil {
		err = json.Unmarshal(raw, &call)
	}
	if err != nil {
		writeError(w, r, errBadRequestf("client call: %v", err))
		return
	}
	if err := checkClientCall(&call); err != nil {
		writeError(w, r, err)
		return
	}
	a := n.serveClientCall(r.Context(), &call)
	if a.code != "" {
		w.Header().Set(clientErrorCodeHeader, a.code)
	}
	writeClientAnswer(w, a)
}

// checkClientCall checks a call another node sent as the edge checks a
// REST call: a member with a bug must not reach a client with it either.
func checkClientCall(call *clientCall) error {
	if err := fsm.ValidateHub(call.Hub); err != nil {
		return err
	}
	if err := fsm.ValidateName("connection", call.ConnID); err != nil {
		return err
	}
	switch call.Op {
	case clientOpInvoke:
		if call.Target == "" || len(call.Target) > fsm.MaxTargetLen {
			return errBadRequestf("target must be 1 to %d bytes", fsm.MaxTargetLen)
		}
	case clientOpStreamItem, clientOpStreamComplete:
		if call.StreamID == "" || len(call.StreamID) > maxStreamIDLen {
			return errBadRequestf("the stream id must be 1 to %d bytes", maxStreamIDLen)
		}
	default:
		return errBadRequestf("unknown client call %q", call.Op)
	}
	return nil
}

// serveClientCall serves a call for a connection this node holds.
func (n *Node) serveClientCall(ctx context.Context, call *clientCall) clientAnswer {
	var err error
	switch call.Op {
	case clientOpInvoke:
		return n.invokeHere(ctx, call)
	case clientOpStreamItem:
		err = n.hubs.SendStreamItem(call.Hub, call.ConnID, call.StreamID, call.Item)
		if err == nil && call.Complete {
			err = n.hubs.CompleteStream(call.Hub, call.ConnID, call.StreamID, "")
		}
	case clientOpStreamComplete:
		err = n.hubs.CompleteStream(call.Hub, call.ConnID, call.StreamID, call.Reason)
	default:
		return answerError(http.StatusBadRequest, "", fmt.Sprintf("unknown client call %q", call.Op))
	}
	if err != nil {
		return clientCallError(call, err)
	}
	return clientAnswer{status: http.StatusAccepted, body: []byte("{}")}
}

// invokeHere sends the invocation and waits for the client's answer.
func (n *Node) invokeHere(ctx context.Context, call *clientCall) clientAnswer {
	timeout := time.Duration(call.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > maxClientInvokeTimeout {
		timeout = DefaultClientInvokeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := n.hubs.InvokeClient(ctx, call.Hub, call.ConnID, call.Target, call.Arguments)
	if err != nil {
		return clientCallError(call, err)
	}
	if res.Error != "" {
		// The client's handler failed or it has no handler for the
		// target: the caller gets the client's error text.
		return answerError(http.StatusBadRequest, "ClientInvocationError", res.Error)
	}
	b, err := json.Marshal(struct {
		Result json.RawMessage `json:"result"`
	}{res.Result})
	if err != nil { // the client's result is checked JSON
		return answerError(http.StatusInternalServerError, "", fmt.Sprintf("encode the client's result: %v", err))
	}
	return clientAnswer{status: http.StatusOK, body: b}
}

// clientCallError maps the SignalR server's errors to answers.
func clientCallError(call *clientCall, err error) clientAnswer {
	switch {
	case errors.Is(err, signalr.ErrNotHeld):
		return answerError(http.StatusNotFound, "NotFound", fmt.Sprintf("connection %q is not connected to hub %q", call.ConnID, call.Hub))
	case errors.Is(err, signalr.ErrUpgrading):
		return answerError(http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
	case errors.Is(err, signalr.ErrRejected):
		return answerError(http.StatusNotFound, "ConnectionClosed", fmt.Sprintf("connection %q closed: %v", call.ConnID, err))
	case errors.Is(err, signalr.ErrConnectionEnded):
		return answerError(http.StatusNotFound, "ConnectionClosed", fmt.Sprintf("connection %q closed before the client answered", call.ConnID))
	case errors.Is(err, context.DeadlineExceeded):
		return answerError(http.StatusRequestTimeout, "RequestTimeout", fmt.Sprintf("connection %q did not answer %q within %s", call.ConnID, call.Target, time.Duration(call.TimeoutMS)*time.Millisecond))
	case errors.Is(err, context.Canceled):
		return answerError(http.StatusServiceUnavailable, "ServiceUnavailable", "the call was canceled")
	}
	return answerError(http.StatusBadRequest, "", err.Error())
}

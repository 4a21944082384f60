package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/backplane/backplane/transport/hubproto"
)

// Client results and server-to-client streams on behalf of the server
// REST API (POST .../connections/{id}/:invoke, .../streams/{id}/:send and
// :complete). As ASP.NET Core's client results, an invocation is a
// request and an answer between one caller and one client: the server
// sends an Invocation with an invocation id to the connection, and the
// client answers with a Completion carrying that id. The node that
// receives the REST call asks the connection's holder, which calls these
// methods. To a connection without stateful reconnect they are sent
// directly; a stateful connection's messages are numbered through the
// log, so its invocation, stream items and stream end are committed to
// its stream there (and reach it on whichever node it resumes); its answer
// is awaited where the call was made.

// ErrNotHeld means the connection is not active on this node.
var ErrNotHeld = errors.New("the connection is not held by this node")

// ErrConnectionEnded means the connection ended before the client
// answered.
var ErrConnectionEnded = errors.New("the connection ended before the client answered")

// ClientResult is a client's answer to an invocation.
type ClientResult struct {
	// Result is the client's result as JSON ("null" when it returned
	// nothing); meaningless when Error is set.
	Result json.RawMessage
	// Error is the error the client reported; empty means success.
	Error string
}

// clientResults is the Server's table of invocations waiting for a
// client's Completion.
type clientResults struct {
	mu      sync.Mutex
	next    uint64
	pending map[string]*pendingResult // by invocation id
}

type pendingResult struct {
	c  *conn
	ch chan ClientResult // buffered: one answer
}

// add registers an invocation of c and returns its id.
func (t *clientResults) add(c *conn) (string, *pendingResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[string]*pendingResult{}
	}
	t.next++
	// A prefix no client-chosen id of ours collides with in the log.
	id := "rest-" + strconv.FormatUint(t.next, 10)
	p := &pendingResult{c: c, ch: make(chan ClientResult, 1)}
	t.pending[id] = p
	return id, p
}

func (t *clientResults) remove(id string) {
	t.mu.Lock()
	delete(t.pending, id)
	t.mu.Unlock()
}

// take removes and returns the invocation id waiting for an answer from
// c, if any: a client can only answer its own invocations.
func (t *clientResults) take(c *conn, id string) *pendingResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending[id]
	if p == nil || p.c != c {
		return nil
	}
	delete(t.pending, id)
	return p
}

// receiveCompletion hands a client's Completion to the invocation waiting
// for it. A Completion nobody waits for (late, after a timeout, or for an
// id the server never sent) is dropped, as ASP.NET does.
func (c *conn) receiveCompletion(m *hubproto.Message) {
	p := c.srv.results.take(c, m.InvocationID)
	if p == nil {
		c.srv.log.Debug("completion for no pending invocation", "conn", c.id, "invocation", m.InvocationID)
		return
	}
	res := ClientResult{Error: m.Error}
	if m.Error == "" {
		raw, err := m.Result.AppendJSON(nil) // a void Completion encodes as null
		if err != nil {
			res.Error = fmt.Sprintf("the client's result cannot be converted to JSON: %v", err)
		} else {
			res.Result = raw
		}
	}
	p.ch <- res
}

// heldConn returns the active connection of hub with the id, held here.
func (s *Server) heldConn(hub, connID string) (*conn, error) {
	s.mu.RLock()
	c := s.byID[connID]
	s.mu.RUnlock()
	if c == nil || c.hub != CanonicalHub(hub) || c.isEnding() || c.protocolOf() == nil {
		return nil, fmt.Errorf("%w: %s in hub %s", ErrNotHeld, connID, hub)
	}
	return c, nil
}

// splitArguments turns a JSON array into the invocation's arguments.
func splitArguments(argsJSON []byte) ([]hubproto.RawValue, error) {
	if len(argsJSON) == 0 {
		return nil, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(argsJSON, &elems); err != nil {
		return nil, fmt.Errorf("arguments must be a JSON array: %w", err)
	}
	args := make([]hubproto.RawValue, len(elems))
	for i, e := range elems {
		args[i] = hubproto.JSONValue(e)
	}
	return args, nil
}

// sendMessage encodes m in c's protocol and queues it.
func (c *conn) sendMessage(m *hubproto.Message) error {
	rec, err := c.protocolOf().Append(nil, m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	c.send(rec)
	return nil
}

// InvokeClient sends an invocation of target with argsJSON (a JSON array)
// to the connection, held here, and waits for the client's Completion
// until ctx ends. The client's error is a ClientResult with Error set,
// not an error: the returned error means there was no answer
// (ErrNotHeld, ErrConnectionEnded, or ctx's error).
func (s *Server) InvokeClient(ctx context.Context, hub, connID, target string, argsJSON []byte) (ClientResult, error) {
	if target == "" {
		return ClientResult{}, errors.New("the target is empty")
	}
	args, err := splitArguments(argsJSON)
	if err != nil {
		return ClientResult{}, err
	}
	c, err := s.heldConn(hub, connID)
	if err != nil {
		return ClientResult{}, err
	}
	id, p := s.results.add(c)
	defer s.results.remove(id)
	if c.mb != nil {
		if err := c.valuesAllowed(); err != nil {
			return ClientResult{}, err
		}
		err = c.commitInvocation(&Invocation{InvocationID: id, Call: true, Target: target, Value: hubproto.JSONValue(argsJSON)})
	} else {
		err = c.sendMessage(&hubproto.Message{Type: hubproto.Invocation, InvocationID: id, Target: target, Arguments: args})
	}
	if err != nil {
		return ClientResult{}, err
	}
	select {
	case res := <-p.ch:
		return res, nil
	case <-c.done:
		select { // an answer that came just before the end still counts
		case res := <-p.ch:
			return res, nil
		default:
		}
		return ClientResult{}, fmt.Errorf("%w: %s", ErrConnectionEnded, connID)
	case <-ctx.Done():
		return ClientResult{}, fmt.Errorf("wait for the client's result: %w", ctx.Err())
	}
}

// SendStreamItem queues a StreamItem with itemJSON (one JSON value) for
// the stream streamID of the connection, held here. Items sent one after
// another (each call returned) reach the client in that order.
func (s *Server) SendStreamItem(hub, connID, streamID string, itemJSON []byte) error {
	if streamID == "" {
		return errors.New("the stream id is empty")
	}
	if !json.Valid(itemJSON) {
		return errors.New("the stream item is not one JSON value")
	}
	c, err := s.heldConn(hub, connID)
	if err != nil {
		return err
	}
	if c.mb != nil {
		return c.recordStreamItem(streamID, hubproto.JSONValue(itemJSON))
	}
	return c.sendMessage(&hubproto.Message{Type: hubproto.StreamItem, InvocationID: streamID, Item: hubproto.JSONValue(itemJSON)})
}

// CompleteStream queues the Completion that ends the stream streamID of
// the connection, held here: with errMsg as its error when not empty.
func (s *Server) CompleteStream(hub, connID, streamID, errMsg string) error {
	if streamID == "" {
		return errors.New("the stream id is empty")
	}
	c, err := s.heldConn(hub, connID)
	if err != nil {
		return err
	}
	if c.mb != nil {
		if err := c.valuesAllowed(); err != nil {
			return err
		}
		return c.commitInvocation(&Invocation{InvocationID: streamID, StreamEnd: true, Error: errMsg})
	}
	return c.sendMessage(&hubproto.Message{Type: hubproto.Completion, InvocationID: streamID, Error: errMsg})
}

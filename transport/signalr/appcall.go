package signalr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/hubproto"
)

// uploadBuffer is how many items of one client upload stream wait for the
// application before the connection's input waits (TCP pushes back).
const uploadBuffer = 16

// appState is what a connection keeps for its Application: the
// invocations waiting for their turn, the running server-to-client
// streams (cancelled by the client's CancelInvocation) and the open upload
// streams (fed by the client's StreamItems).
type appState struct {
	mu      sync.Mutex
	queue   []appWork
	running bool
	streams map[string]context.CancelFunc
	uploads map[string]*upload
}

// appSt is the connection's appState, made on first use.
func (c *conn) appSt() *appState {
	if st := c.app.Load(); st != nil {
		return st
	}
	c.app.CompareAndSwap(nil, &appState{})
	return c.app.Load()
}

// appWork is one message of a connection, in the order the client sent it:
// an invocation to run (call), or, on a stateful connection, a marker that
// a client message with nothing to run was handled (seq only).
type appWork struct {
	call *Call
	run  func() // runs the work; nil for a marker
	seq  uint64 // the client's sequence number (stateful connections)
}

// upload is one client upload stream.
type upload struct {
	items chan hubproto.RawValue
	once  sync.Once
	err   error
}

func (u *upload) finish(err error) {
	u.once.Do(func() {
		u.err = err
		close(u.items)
	})
}

// forApplication reports whether a client invocation goes to the
// Application: any that is not a relay method the client may call, when
// there is one.
func (c *conn) forApplication(m *hubproto.Message) bool {
	if c.srv.opts.Application == nil {
		return false
	}
	if m.Type == hubproto.StreamInvocation || len(m.StreamIDs) > 0 {
		return true
	}
	method := strings.ToLower(m.Target)
	if _, relay := relayPermissions[method]; !relay || c.srv.relayOff[c.hub] {
		return true
	}
	return access.Restricted(c.srv.opts.RelayPolicy) && c.permitted(method, m) != nil
}

// info describes the connection to the Application.
func (c *conn) info() ConnInfo {
	ci := ConnInfo{Hub: c.hub, ID: c.id, UserID: c.user, Claims: c.claims, Query: clientQuery(c.rawQuery), Stateful: c.mb != nil}
	if p := c.protocolOf(); p != nil {
		ci.Protocol = p.Name()
	}
	return ci
}

// newCall prepares an invocation for the Application: its upload streams
// are registered before the client's items can arrive.
func (c *conn) newCall(m *hubproto.Message) *Call {
	p := c.protocolOf()
	call := &Call{Conn: c.info(), Message: m, Protocol: p}
	st := c.appSt()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, id := range m.StreamIDs {
		if st.uploads == nil {
			st.uploads = make(map[string]*upload)
		}
		st.uploads[id] = &upload{items: make(chan hubproto.RawValue, uploadBuffer)}
	}
	uploads := make(map[string]*upload, len(m.StreamIDs))
	for _, id := range m.StreamIDs {
		uploads[id] = st.uploads[id]
	}
	call.Upload = func(streamID string) (<-chan hubproto.RawValue, func() error) {
		u := uploads[streamID]
		if u == nil {
			closed := make(chan hubproto.RawValue)
			close(closed)
			return closed, func() error { return fmt.Errorf("no upload stream %q in this invocation", streamID) }
		}
		return u.items, func() error { return u.err }
	}
	return call
}

// invokeApplication queues an invocation for the Application (a connection
// without stateful reconnect): a plain invocation runs after those the
// client sent before it, a stream invocation starts in its turn and runs
// beside the later ones.
func (c *conn) invokeApplication(m *hubproto.Message) {
	if errMsg := c.overRate(m); errMsg != "" {
		c.dropUploads(m)
		c.complete(m.InvocationID, nil, errMsg)
		return
	}
	m = cloneMessage(m) // it runs after the receive buffer is reused
	call := c.newCall(m)
	c.enqueueApp(appWork{call: call, run: func() {
		if m.Type == hubproto.StreamInvocation {
			go c.runStream(call, c.sendItemDirect, func(comp Completion) { c.completeWith(m.InvocationID, m.Target, comp) })
			return
		}
		c.completeWith(m.InvocationID, m.Target, c.runCall(call))
	}})
}

// enqueueApp adds work to the connection's queue and starts its goroutine
// if none runs.
func (c *conn) enqueueApp(w appWork) {
	st := c.appSt()
	st.mu.Lock()
	st.queue = append(st.queue, w)
	start := !st.running
	st.running = true
	st.mu.Unlock()
	if start {
		go c.runApp()
	}
}

// runApp runs the connection's queued work in order until the queue is
// empty.
func (c *conn) runApp() {
	st := c.appSt()
	for {
		st.mu.Lock()
		if len(st.queue) == 0 || c.isDone() {
			st.queue, st.running = nil, false
			st.mu.Unlock()
			return
		}
		w := st.queue[0]
		st.queue = st.queue[1:]
		st.mu.Unlock()
		if w.run != nil {
			w.run()
		}
		if c.mb != nil {
			c.handled(w.seq)
		}
	}
}

// runCall runs a plain invocation in the Application, ending it when the
// connection ends.
func (c *conn) runCall(call *Call) Completion {
	ctx, cancel := c.callContext()
	defer cancel()
	call.Cancelled = ctx.Done()
	defer c.dropUploads(call.Message)
	return c.srv.opts.Application.Invoke(ctx, call)
}

// callContext is the context of one Application call: it ends with the
// connection or the server.
func (c *conn) callContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.srv.ctx)
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// runStream runs a stream invocation: items go out through send, and its
// end through finish. The client's CancelInvocation ends it.
func (c *conn) runStream(call *Call, send func(id string, item hubproto.RawValue) error, finish func(Completion)) {
	id := call.Message.InvocationID
	ctx, cancel := c.callContext()
	defer cancel()
	st := c.appSt()
	st.mu.Lock()
	if st.streams == nil {
		st.streams = make(map[string]context.CancelFunc)
	}
	st.streams[id] = cancel
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.streams, id)
		st.mu.Unlock()
	}()
	call.Cancelled = ctx.Done()
	call.SendItem = func(item hubproto.RawValue) error {
		if ctx.Err() != nil {
			return fmt.Errorf("stream %q: %w", id, ctx.Err())
		}
		return send(id, item)
	}
	defer c.dropUploads(call.Message)
	comp := c.srv.opts.Application.Invoke(ctx, call)
	if errors.Is(ctx.Err(), context.Canceled) && !c.isDone() && comp.Error == "" {
		// Cancelled by the client: ASP.NET completes the stream quietly.
		comp = Completion{}
	}
	comp.HasResult, comp.Result = false, hubproto.RawValue{} // a stream's completion has no result
	finish(comp)
}

// sendItemDirect sends a stream item to a connection without stateful
// reconnect.
func (c *conn) sendItemDirect(id string, item hubproto.RawValue) error {
	if c.isDone() {
		return ErrConnectionEnded
	}
	return c.sendMessage(&hubproto.Message{Type: hubproto.StreamItem, InvocationID: id, Item: item})
}

// completeWith answers an invocation with the Application's completion.
func (c *conn) completeWith(invocationID, target string, comp Completion) {
	if invocationID == "" {
		return
	}
	m := completionMessage(invocationID, target, comp)
	if err := c.sendMessage(&m); err != nil {
		c.srv.log.Error("send completion", "conn", c.id, "err", err)
		c.complete(invocationID, nil, fmt.Sprintf("An unexpected error occurred invoking '%s' on the server: its result could not be encoded.", target))
	}
}

// completionMessage is the Completion an Application's answer becomes.
func completionMessage(invocationID, target string, comp Completion) hubproto.Message {
	m := hubproto.Message{Type: hubproto.Completion, InvocationID: invocationID, Error: completionError(target, comp)}
	if m.Error == "" && comp.HasResult {
		m.Result, m.HasResult = comp.Result, true
	}
	return m
}

// receiveStreamMessage routes a client's StreamItem, stream Completion or
// CancelInvocation to the invocation it belongs to; false: none here.
func (c *conn) receiveStreamMessage(m *hubproto.Message) bool {
	st := c.app.Load()
	if st == nil {
		return false // no invocation of this connection ever ran
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch m.Type {
	case hubproto.CancelInvocation:
		if cancel := st.streams[m.InvocationID]; cancel != nil {
			cancel()
		}
		return true
	case hubproto.StreamItem:
		u := st.uploads[m.InvocationID]
		if u == nil {
			return true // an item of no stream (ended, or never opened): dropped, as ASP.NET
		}
		st.mu.Unlock()
		select {
		case u.items <- m.Item:
		case <-c.done:
		}
		st.mu.Lock()
		return true
	case hubproto.Completion:
		u := st.uploads[m.InvocationID]
		if u == nil {
			return false // a client result (clientresult.go)
		}
		delete(st.uploads, m.InvocationID)
		var err error
		if m.Error != "" {
			err = errors.New(m.Error)
		}
		u.finish(err)
		return true
	}
	return false
}

// dropUploads ends the upload streams of an invocation that finished (or
// never ran): later items of them are dropped.
func (c *conn) dropUploads(m *hubproto.Message) {
	st := c.app.Load()
	if len(m.StreamIDs) == 0 || st == nil {
		return // nothing was registered
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, id := range m.StreamIDs {
		if u := st.uploads[id]; u != nil {
			delete(st.uploads, id)
			u.finish(ErrConnectionEnded)
		}
	}
}

// endApplication ends what the connection's Application calls wait for:
// its upload streams (its streams and calls end with c.done).
func (c *conn) endApplication() {
	st := c.app.Load()
	if st == nil {
		return
	}
	st.mu.Lock()
	uploads := st.uploads
	st.uploads = nil
	st.mu.Unlock()
	for _, u := range uploads {
		u.finish(ErrConnectionEnded)
	}
}

package hubs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// Invoke runs a client's invocation of a hub method (signalr.Application).
func (s *Server) Invoke(ctx context.Context, call *signalr.Call) signalr.Completion {
	h := s.hub(call.Conn.Hub)
	if h == nil || call.Message == nil {
		return signalr.Completion{Unknown: true}
	}
	m := h.methods[strings.ToLower(call.Message.Target)]
	if m == nil {
		return signalr.Completion{Unknown: true}
	}
	isStream := call.Message.Type == hubproto.StreamInvocation
	if isStream && !m.streaming() {
		return errCompletion(fmt.Sprintf("The client attempted to invoke the non-streaming '%s' method with a streaming invocation.", m.name))
	}
	if !isStream && m.streaming() {
		return errCompletion(fmt.Sprintf("The client attempted to invoke the streaming '%s' method with a non-streaming invocation.", m.name))
	}
	if len(call.Message.Arguments) != m.wireArgs() {
		return errCompletion(fmt.Sprintf("Invocation provides %d argument(s) but target expects %d.", len(call.Message.Arguments), m.wireArgs()))
	}
	if len(call.Message.StreamIDs) != len(m.uploads) {
		return errCompletion(fmt.Sprintf("Client sent %d stream(s), Hub method expects %d.", len(call.Message.StreamIDs), len(m.uploads)))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if call.Cancelled != nil {
		go func() {
			select {
			case <-call.Cancelled:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	uploads := &uploadFailure{cancel: cancel}
	in, err := s.bindArgs(ctx, m, call, uploads)
	if err != nil {
		return errCompletion("Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked.")
	}
	out, panicErr := callSafely(m.fn, in)
	if panicErr != nil {
		s.log.Error("hubs: method panicked", "hub", call.Conn.Hub, "method", m.name, "err", panicErr)
		return s.failure(m.name, panicErr)
	}
	if m.hasErr {
		if e, _ := out[len(out)-1].Interface().(error); e != nil {
			return s.failure(m.name, e)
		}
	}
	if err := uploads.get(); err != nil {
		// The method saw its upload end early (and its context end): what
		// it returned was computed from part of the stream.
		return s.failure(m.name, err)
	}
	switch m.result {
	case resultNone:
		return signalr.Completion{}
	case resultValue:
		b, err := json.Marshal(out[0].Interface())
		if err != nil {
			return s.failure(m.name, fmt.Errorf("encode the result: %w", err))
		}
		return signalr.Completion{Result: hubproto.JSONValue(b), HasResult: true}
	}
	if err := s.stream(ctx, m, out[0], call); err != nil {
		return s.failure(m.name, err)
	}
	return signalr.Completion{}
}

func errCompletion(msg string) signalr.Completion { return signalr.Completion{Error: msg} }

// failure is the completion of a method that failed, with ASP.NET's texts.
func (s *Server) failure(name string, err error) signalr.Completion {
	msg := fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", name)
	s.log.Debug("hubs: method failed", "method", name, "err", err)
	var he *HubError
	switch {
	case errors.As(err, &he):
		msg += " HubException: " + he.Message
	case s.detail:
		msg += " " + err.Error()
	}
	return errCompletion(msg)
}

// callSafely calls fn, turning a panic into an error: a hub method's bug
// must not take the node down.
func callSafely(fn reflect.Value, in []reflect.Value) (out []reflect.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn.Call(in), nil
}

// bindArgs decodes the client's arguments into the method's parameter
// types and starts feeding upload streams.
func (s *Server) bindArgs(ctx context.Context, m *method, call *signalr.Call, uploads *uploadFailure) ([]reflect.Value, error) {
	in := make([]reflect.Value, 0, len(m.params)+1)
	switch m.ctxArg {
	case 1, 2:
		hc := s.newContext(ctx, call.Conn)
		in = append(in, reflect.ValueOf(hc))
	}
	wire, up := 0, 0
	for i, p := range m.params {
		if up < len(m.uploads) && m.uploads[up] == i {
			ch, err := s.upload(ctx, p.Elem(), call, call.Message.StreamIDs[up], uploads)
			if err != nil {
				return nil, err
			}
			in = append(in, ch)
			up++
			continue
		}
		v, err := decodeValue(call.Message.Arguments[wire], p)
		if err != nil {
			return nil, err
		}
		in = append(in, v)
		wire++
	}
	return in, nil
}

func decodeValue(raw hubproto.RawValue, t reflect.Type) (reflect.Value, error) {
	js, err := raw.AppendJSON(nil)
	if err != nil {
		return reflect.Value{}, fmt.Errorf("convert an argument to JSON: %w", err)
	}
	p := reflect.New(t)
	if err := json.Unmarshal(js, p.Interface()); err != nil {
		return reflect.Value{}, fmt.Errorf("decode an argument as %s: %w", t, err)
	}
	return p.Elem(), nil
}

// uploadFailure holds the first failure of an invocation's upload
// streams: the client completed one with an error, or sent an item that
// does not decode. It ends the invocation's context, and the invocation
// then fails, as an ASP.NET method reading a faulted ChannelReader throws.
type uploadFailure struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error
}

func (u *uploadFailure) set(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
	u.cancel()
}

func (u *uploadFailure) get() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// upload returns a channel of elem fed from the client's upload stream id.
// It closes when the client completes the stream or ctx ends; a stream the
// client ends with an error, or an item that does not decode, ends it and
// is recorded in failed.
func (s *Server) upload(ctx context.Context, elem reflect.Type, call *signalr.Call, id string, failed *uploadFailure) (reflect.Value, error) {
	if call.Upload == nil {
		return reflect.Value{}, errors.New("the connection cannot upload streams")
	}
	items, streamErr := call.Upload(id)
	ch := reflect.MakeChan(reflect.ChanOf(reflect.BothDir, elem), 0)
	go func() {
		defer ch.Close()
		for {
			var raw hubproto.RawValue
			var ok bool
			select {
			case raw, ok = <-items:
			case <-ctx.Done():
				return
			}
			if !ok {
				if err := streamErr(); err != nil {
					failed.set(fmt.Errorf("the client ended upload stream %q with an error: %w", id, err))
				}
				return
			}
			v, err := decodeValue(raw, elem)
			if err != nil {
				s.log.Debug("hubs: an upload stream item does not decode", "stream", id, "err", err)
				failed.set(fmt.Errorf("an item of upload stream %q does not decode: %w", id, err))
				return
			}
			chosen, _, _ := reflect.Select([]reflect.SelectCase{
				{Dir: reflect.SelectSend, Chan: ch, Send: v},
				{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			})
			if chosen == 1 {
				return
			}
		}
	}()
	return ch.Convert(reflect.ChanOf(reflect.RecvDir, elem)), nil
}

package hubs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/backplane/backplane/transport/hubproto"
	"github.com/backplane/backplane/transport/signalr"
)

// errStopped ends a stream whose client is gone or cancelled it.
var errStopped = errors.New("the stream was cancelled")

// stream sends a streaming method's items through call.SendItem until the
// channel closes or the iterator ends; cancellation stops it.
func (s *Server) stream(ctx context.Context, m *method, src reflect.Value, call *signalr.Call) error {
	send := func(v reflect.Value) error {
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return fmt.Errorf("encode a stream item: %w", err)
		}
		if call.SendItem == nil {
			return errors.New("the connection cannot receive streams")
		}
		if err := call.SendItem(hubproto.JSONValue(b)); err != nil {
			return errStopped
		}
		return nil
	}
	var err error
	switch m.result {
	case resultChan:
		if src.IsNil() {
			return nil
		}
		for {
			chosen, v, ok := reflect.Select([]reflect.SelectCase{
				{Dir: reflect.SelectRecv, Chan: src},
				{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			})
			if chosen == 1 {
				err = errStopped
				break
			}
			if !ok {
				break
			}
			if err = send(v); err != nil {
				break
			}
		}
	case resultSeq, resultSeq2E:
		if src.IsNil() {
			return nil
		}
		yt := src.Type().In(0)
		yield := reflect.MakeFunc(yt, func(args []reflect.Value) []reflect.Value {
			if err != nil {
				return []reflect.Value{reflect.ValueOf(false)}
			}
			if m.result == resultSeq2E {
				if e, _ := args[1].Interface().(error); e != nil {
					err = e
					return []reflect.Value{reflect.ValueOf(false)}
				}
			}
			if ctx.Err() != nil {
				err = errStopped
			} else {
				err = send(args[0])
			}
			return []reflect.Value{reflect.ValueOf(err == nil)}
		})
		if _, perr := callSafely(src, []reflect.Value{yield}); perr != nil {
			return perr
		}
	}
	if errors.Is(err, errStopped) {
		return nil // a cancelled stream's completion is not seen by the client
	}
	return err
}

package hubs

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// HubError is an error whose message reaches the client (ASP.NET's
// HubException). Other errors reach it as "An unexpected error occurred
// invoking 'X' on the server." unless Config.DetailedErrors is set.
type HubError struct{ Message string }

func (e *HubError) Error() string { return e.Message }

// NewHubError returns a *HubError with a formatted message.
func NewHubError(format string, args ...any) error {
	return &HubError{Message: fmt.Sprintf(format, args...)}
}

var (
	ctxType     = reflect.TypeFor[context.Context]()
	hubCtxType  = reflect.TypeFor[*Context]()
	errType     = reflect.TypeFor[error]()
	boolType    = reflect.TypeFor[bool]()
	onConnName  = "OnConnected"
	onDiscoName = "OnDisconnected"
)

// resultKind is what a method returns besides an error.
type resultKind int

const (
	resultNone resultKind = iota
	resultValue
	resultChan  // <-chan T or chan T: a server-to-client stream
	resultSeq   // iter.Seq[T]
	resultSeq2E // iter.Seq2[T, error]
)

type method struct {
	name    string
	fn      reflect.Value // bound method
	ctxArg  int           // 0 none, 1 context.Context, 2 *Context
	params  []reflect.Type
	uploads []int // indexes into params of upload stream parameters
	result  resultKind
	elem    reflect.Type // stream item type
	hasErr  bool
}

type hubType struct {
	name           string
	methods        map[string]*method // by lower-case name
	onConnected    func(*Context) error
	onDisconnected func(*Context, error) error
}

func newHubType(name string, hub any) (*hubType, error) {
	if name == "" || hub == nil {
		return nil, errors.New("hubs: a hub needs a name and a value")
	}
	ht := &hubType{name: name, methods: map[string]*method{}}
	v := reflect.ValueOf(hub)
	t := v.Type()
	for i := 0; i < t.NumMethod(); i++ {
		m := t.Method(i)
		bound := v.Method(i)
		switch m.Name {
		case onConnName:
			f, ok := bound.Interface().(func(*Context) error)
			if !ok {
				return nil, fmt.Errorf("hubs: %s.OnConnected must be func(*hubs.Context) error", name)
			}
			ht.onConnected = f
			continue
		case onDiscoName:
			f, ok := bound.Interface().(func(*Context, error) error)
			if !ok {
				return nil, fmt.Errorf("hubs: %s.OnDisconnected must be func(*hubs.Context, error) error", name)
			}
			ht.onDisconnected = f
			continue
		}
		hm, err := newMethod(m.Name, bound)
		if err != nil {
			return nil, fmt.Errorf("hubs: %s.%s: %w", name, m.Name, err)
		}
		key := strings.ToLower(m.Name)
		if _, dup := ht.methods[key]; dup {
			return nil, fmt.Errorf("hubs: %s has two methods named %q ignoring case", name, m.Name)
		}
		ht.methods[key] = hm
	}
	return ht, nil
}

func newMethod(name string, fn reflect.Value) (*method, error) {
	ft := fn.Type()
	m := &method{name: name, fn: fn}
	i := 0
	if ft.NumIn() > 0 {
		switch ft.In(0) {
		case hubCtxType:
			m.ctxArg, i = 2, 1
		case ctxType:
			m.ctxArg, i = 1, 1
		}
	}
	for ; i < ft.NumIn(); i++ {
		p := ft.In(i)
		if isUploadType(p) {
			m.uploads = append(m.uploads, len(m.params))
		}
		m.params = append(m.params, p)
	}
	if ft.IsVariadic() {
		return nil, errors.New("variadic methods are not supported")
	}
	switch ft.NumOut() {
	case 0:
	case 1:
		if ft.Out(0) == errType {
			m.hasErr = true
		} else {
			m.setResult(ft.Out(0))
		}
	case 2:
		if ft.Out(1) != errType {
			return nil, errors.New("a second result must be an error")
		}
		m.hasErr = true
		m.setResult(ft.Out(0))
	default:
		return nil, errors.New("a method returns at most a result and an error")
	}
	return m, nil
}

func isUploadType(t reflect.Type) bool {
	return t.Kind() == reflect.Chan && t.ChanDir() == reflect.RecvDir
}

// setResult classifies a result type: a channel or an iterator makes a
// streaming method.
func (m *method) setResult(t reflect.Type) {
	m.result = resultValue
	switch {
	case t.Kind() == reflect.Chan && t.ChanDir()&reflect.RecvDir != 0:
		m.result, m.elem = resultChan, t.Elem()
	case t.Kind() == reflect.Func && t.NumIn() == 1 && t.NumOut() == 0:
		y := t.In(0)
		if y.Kind() != reflect.Func || y.NumOut() != 1 || y.Out(0) != boolType {
			return
		}
		switch {
		case y.NumIn() == 1:
			m.result, m.elem = resultSeq, y.In(0)
		case y.NumIn() == 2 && y.In(1) == errType:
			m.result, m.elem = resultSeq2E, y.In(0)
		}
	}
}

func (m *method) streaming() bool { return m.result >= resultChan }

// wireArgs is how many arguments the client sends (upload streams come
// as stream ids instead).
func (m *method) wireArgs() int { return len(m.params) - len(m.uploads) }

//go:build !linux

package netconn

import (
	"errors"
	"net"
)

// Parker parks idle readers on Linux only; elsewhere each idle reader
// waits on a goroutine of its own.
type Parker struct{}

// Watch is a connection's place in a Parker.
type Watch struct{}

// NewParker reports that this platform has no Parker.
func NewParker() (*Parker, error) { return nil, errors.ErrUnsupported }

// Watch reports that this platform has no Parker.
func (p *Parker) Watch(net.Conn) (*Watch, error) { return nil, errors.ErrUnsupported }

// Park reports false: the caller waits by itself.
func (w *Watch) Park(func()) bool { return false }

// Cancel does nothing.
func (w *Watch) Cancel() {}

// Parked is always 0.
func (p *Parker) Parked() int { return 0 }

// Close does nothing.
func (p *Parker) Close() error { return nil }

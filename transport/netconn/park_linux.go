//go:build linux

package netconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Parker watches idle connections for readability in an epoll set of its
// own, so that an idle connection needs no goroutine (and no goroutine
// stack) waiting for its next byte. A connection's reader parks when it
// has waited a while; when the socket becomes readable, hangs up or
// fails, the Parker runs the reader's resume function on a new goroutine,
// which then reads through the runtime's poller as usual.
//
// The Parker holds a connection's file descriptor while it is watched, so
// the connection's owner must Cancel it before closing the connection
// (WatchedConn does). One Parker serves a whole process (Shared); one
// goroutine waits on its epoll set.
type Parker struct {
	epfd   int
	wakefd int // an eventfd in the set: written by Close to stop the loop
	done   chan struct{}

	mu     sync.Mutex
	byFD   map[int]*Watch // armed watches
	closed bool
}

// Watch is one connection's place in a Parker.
type Watch struct {
	p          *Parker
	fd         int
	gen        uint32 // bumped at each Park: events of an earlier arming are ignored
	armed      bool   // parked: resume runs at the next event or at Cancel
	registered bool   // the fd is in the epoll set (armed, or fired and disabled)
	cancelled  bool
	resume     func()
}

// NewParker starts a Parker; Close stops it.
func NewParker() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netconn: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netconn: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(wakefd)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netconn: epoll_ctl: %w", err)
	}
	p := &Parker{epfd: epfd, wakefd: wakefd, done: make(chan struct{}), byFD: map[int]*Watch{}}
	go p.loop()
	return p, nil
}

// Watch prepares c to be parked. c must reach a socket's file descriptor
// (syscall.Conn); a TLS connection does not, since bytes may wait in its
// own buffers.
func (p *Parker) Watch(c net.Conn) (*Watch, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("netconn: %T has no file descriptor: %w", c, errors.ErrUnsupported)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netconn: syscall conn: %w", err)
	}
	w := &Watch{p: p, fd: -1}
	if err := raw.Control(func(fd uintptr) { w.fd = int(fd) }); err != nil {
		return nil, fmt.Errorf("netconn: file descriptor: %w", err)
	}
	return w, nil
}

// Park arms w: resume runs once, on a new goroutine, when the socket is
// readable (bytes, end of stream or an error), or when w is cancelled. It
// reports false, and arms nothing, when w was cancelled, is already armed
// or the socket cannot be watched; the caller then waits by itself.
func (w *Watch) Park(resume func()) bool {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.cancelled || w.armed || p.closed {
		return false
	}
	if old := p.byFD[w.fd]; old != nil && old != w {
		// The descriptor was closed under an armed watch (its owner did not
		// Cancel) and reused: let that reader find its connection closed.
		p.disarmLocked(old)
		go old.resumeOnce()
	}
	w.gen++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(w.fd), Pad: int32(w.gen)}
	op := unix.EPOLL_CTL_ADD
	if w.registered {
		op = unix.EPOLL_CTL_MOD
	}
	err := unix.EpollCtl(p.epfd, op, w.fd, &ev)
	switch {
	case errors.Is(err, unix.EEXIST):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, w.fd, &ev)
	case errors.Is(err, unix.ENOENT):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, w.fd, &ev)
	}
	if err != nil {
		return false
	}
	w.registered, w.armed, w.resume = true, true, resume
	p.byFD[w.fd] = w
	return true
}

// Cancel takes w out of the Parker for good; an armed w's resume runs (on
// a new goroutine), and a later Park reports false. Call it before closing
// the connection. It is safe to call more than once.
func (w *Watch) Cancel() {
	p := w.p
	p.mu.Lock()
	w.cancelled = true
	resume := w.armed
	p.disarmLocked(w)
	if w.registered && !p.closed {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	}
	w.registered = false
	p.mu.Unlock()
	if resume {
		go w.resumeOnce()
	}
}

// disarmLocked takes an armed w out of the table; its resume is kept for
// resumeOnce.
func (p *Parker) disarmLocked(w *Watch) {
	if !w.armed {
		return
	}
	w.armed = false
	if p.byFD[w.fd] == w {
		delete(p.byFD, w.fd)
	}
}

// resumeOnce runs the resume function the last Park gave, once.
func (w *Watch) resumeOnce() {
	w.p.mu.Lock()
	resume := w.resume
	w.resume = nil
	w.p.mu.Unlock()
	if resume != nil {
		resume()
	}
}

// Parked counts the watches armed now.
func (p *Parker) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byFD)
}

// loop waits on the epoll set and resumes the readers whose sockets are
// ready, until Close.
func (p *Parker) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			slog.Error("netconn: epoll_wait failed; parked readers resume", "err", err)
			p.resumeAll()
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == p.wakefd {
				return
			}
			p.mu.Lock()
			w := p.byFD[fd]
			fire := w != nil && w.armed && w.gen == uint32(ev.Pad)
			if fire {
				p.disarmLocked(w)
			}
			p.mu.Unlock()
			if fire {
				go w.resumeOnce()
			}
		}
	}
}

// resumeAll disarms every watch and resumes its reader.
func (p *Parker) resumeAll() {
	p.mu.Lock()
	p.closed = true
	var armed []*Watch
	for _, w := range p.byFD {
		armed = append(armed, w)
		p.disarmLocked(w)
	}
	p.mu.Unlock()
	for _, w := range armed {
		go w.resumeOnce()
	}
}

// Close stops the Parker; every parked reader resumes (and goes on waiting
// by itself), and Park reports false from then on.
func (p *Parker) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	one := [8]byte{1}
	if _, err := unix.Write(p.wakefd, one[:]); err != nil {
		return fmt.Errorf("netconn: wake the parker: %w", err)
	}
	<-p.done
	p.resumeAll()
	_ = unix.Close(p.wakefd)
	return unix.Close(p.epfd)
}

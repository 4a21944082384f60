package stream

import (
	"io"
	"sync/atomic"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
	"github.com/backplane/backplane/transport/netconn"
)

// detached is what a native stream over a connection taken from net/http
// (a WebSocket, or SSE over HTTP/1.x) keeps to live without a goroutine
// while it waits: a pump that runs its writer when its hub moves, a
// keep-alive timer, the callback on the server's context and its token's
// timer (which end it), its place in the per-address count, and its
// cursor.
type detached struct {
	s        *Server
	reader   fsm.Filter
	remote   string
	cleanups *netconn.Cleanups // the stream's place in the per-address count, kept from limited

	ending atomic.Bool // end has run: the stream is closing

	pump *netconn.Pump
	life netconn.Life // the keep-alives, the server's context, the token's expiry

	after atomic.Uint64 // the cursor: every message up to it was sent
}

// start sets the stream up: its pump runs send at each change of its hub
// and finish when send reports the end; keepAlive is sent after each
// KeepAlive of quiet (a failure ends the stream). The server's context
// ends the stream with its cause (a draining node tells the reader its
// cursor), the token's expiry with errTokenExpired, both through end: no
// context of its own, a callback and a timer.
func (d *detached) start(grant access.Grant, send func() bool, finish func(), keepAlive func() error, end func(error)) {
	messages := []fsm.Watch{fsm.MessagesOf(d.reader.Hub)}
	d.pump = netconn.NewPump(func(wake func()) func() bool {
		return d.s.store.AfterChange(messages, wake)
	}, send, finish)
	d.life.Start(d.s.opts.Context, grant.Expires, errTokenExpired, d.s.opts.KeepAlive, keepAlive, errStreamEnded, end)
}

// stop ends the stream's pump, keep-alives, callback and timer, once: it
// reports whether this call did (the caller then closes the connection
// and gives back what the stream held).
func (d *detached) stop() bool {
	if !d.pump.Finish() {
		return false
	}
	d.ending.Store(true)
	d.life.Stop()
	return true
}

// nextPage reads the page that follows *after for the stream's reader,
// asking first for a wake-up at its hub's next message. Pages with nothing
// for this reader move the cursor on; more is false when everything is
// sent.
func (d *detached) nextPage(after *uint64) (page fsm.Page, more bool, err error) {
	for {
		d.pump.Arm()
		page, err = d.s.store.Read(&d.reader, *after, readBatch)
		if err != nil {
			return page, false, err
		}
		if len(page.Messages) > 0 || page.Reset {
			return page, true, nil
		}
		if page.Next <= *after {
			return page, false, nil
		}
		*after = page.Next
		d.after.Store(*after)
	}
}

// pageWriter is a detached stream's own part of sending: writing a page
// to its client, and telling the client that a read of the store failed.
type pageWriter interface {
	writePage(page *fsm.Page) bool
	readFailed(err error)
}

// sendPages writes each page that follows the cursor with w until there
// is nothing more to send (true) or the stream must end (false); a failed
// read is handed to w unless the stream is already ending.
func (d *detached) sendPages(w pageWriter) bool {
	after := d.after.Load()
	for {
		page, more, err := d.nextPage(&after)
		if err != nil {
			if !d.ending.Load() {
				w.readFailed(err)
			}
			return false
		}
		if !more {
			return true
		}
		if !w.writePage(&page) {
			return false
		}
		after = page.Next
	}
}

// finish ends the stream once: no more writers or keep-alives, conn closed
// (a running writer fails and returns), its place in the per-address count
// and in open (the server's count of its kind) given back.
func (d *detached) finish(conn io.Closer, open *atomic.Int64) {
	if !d.stop() {
		return
	}
	_ = conn.Close()
	d.cleanups.Run()
	open.Add(-1)
}

// idleBuffer is what a stream's writer keeps of its buffer while it waits:
// a small one, not the size of the last page it sent.
func idleBuffer(buf []byte) []byte {
	if cap(buf) > 1<<10 {
		return nil
	}
	return buf
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// What the storm scenario checks of each reader: the native SSE stream
// format, that its indexes follow each other with no gap and no duplicate,
// and when it caught up after the kill.

// errSSEFormat marks a stream that broke the SSE format the protocol
// documents (as opposed to a stream that ended).
var errSSEFormat = errors.New("SSE format")

// readSSE reads a native cursor stream (docs/protocol.md) until it ends:
// onMessage gets every event that has an id (the message index) and its
// data, onReset the data of every "event: reset". Comments and retry
// lines are skipped. data is valid only during the call. An event with
// data but no id, an unknown event type or an id that is not a number is
// an error wrapping errSSEFormat; the end of the stream is the reader's
// error (io.EOF for a clean end).
func readSSE(br *bufio.Reader, onMessage func(id uint64, data []byte), onReset func(data []byte)) error {
	var (
		id            uint64
		hasID, isData bool
		event         string
		data          []byte
	)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("%w: a line longer than %d bytes", errSSEFormat, br.Size())
			}
			return err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 { // the end of an event
			switch {
			case event == "reset":
				onReset(data)
			case event != "":
				return fmt.Errorf("%w: unexpected event %q", errSSEFormat, event)
			case isData && hasID:
				onMessage(id, data)
			case isData:
				return fmt.Errorf("%w: a message without id: %.200s", errSSEFormat, data)
			}
			id, hasID, isData, event, data = 0, false, false, "", data[:0]
			continue
		}
		if line[0] == ':' {
			continue // a comment: the opening line, or a ping
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			v, ok := atoi(value)
			if !ok {
				return fmt.Errorf("%w: id %q is not an index", errSSEFormat, value)
			}
			id, hasID = uint64(v), true
		case "data":
			if isData {
				data = append(data, '\n')
			}
			data, isData = append(data, value...), true
		case "event":
			event = string(value)
		}
	}
}

// sentFromData reads the send time (unix nanoseconds) a benchmark message
// carries as its first argument, from a native message's JSON.
func sentFromData(data []byte) (int64, bool) {
	const key = `"arguments":[`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key):]
	end := bytes.IndexAny(rest, ",]")
	if end < 0 {
		return 0, false
	}
	return atoi(rest[:end])
}

// seqCheck checks that a reader's indexes follow each other one by one
// from its starting cursor: no gap, no repeat, no step back.
type seqCheck struct {
	last     uint64 // the highest index received: the cursor to resume from
	received int64  // messages received, repeats included
	gaps     int64  // times an index skipped over others
	missed   uint64 // indexes skipped over
	dups     int64  // messages whose index was not above the last
	first    string // the first violation, described
}

func newSeqCheck(after uint64) seqCheck { return seqCheck{last: after} }

// add checks the next index received.
func (s *seqCheck) add(id uint64) {
	s.received++
	switch {
	case id == s.last+1:
		s.last = id
	case id <= s.last:
		s.dups++
		if s.first == "" {
			s.first = fmt.Sprintf("index %d after %d (a repeat or a step back)", id, s.last)
		}
	default:
		s.gaps++
		s.missed += id - s.last - 1
		if s.first == "" {
			s.first = fmt.Sprintf("index %d after %d (%d missing)", id, s.last, id-s.last-1)
		}
		s.last = id
	}
}

// indexAt is a reader's last index from a given time on.
type indexAt struct {
	index uint64
	at    time.Time
}

// catchUp times when a reader caught up with the head after the kill. The
// head is the highest index committed (acknowledged with 202 to the
// publisher, so every index up to it is committed) at the moment the
// reader reconnected: the first byte of its first stream on a surviving
// node. The reader caught up at the first time at or after the kill when
// the last index it had received was at least that head. Because the head
// is known only once the reader reconnects, the indexes it still read
// from the dead node's socket after the kill are kept until then.
type catchUp struct {
	lastBeforeKill uint64    // the last index received before the kill
	early          []indexAt // indexes received after the kill, before the reconnection
	reconnected    bool
	target         uint64    // the head when the reader reconnected
	at             time.Time // when it caught up; zero until then
}

// delivered records that the reader's last index became last at t;
// killAt is zero before the kill.
func (c *catchUp) delivered(t time.Time, last uint64, killAt time.Time) {
	switch {
	case c.reconnected:
		if c.at.IsZero() && last >= c.target {
			c.at = t
		}
	case killAt.IsZero() || t.Before(killAt):
		c.lastBeforeKill = last
	default:
		c.early = append(c.early, indexAt{last, t})
	}
}

// reconnect records the reader's first byte from a surviving node at t,
// when head was the highest committed index.
func (c *catchUp) reconnect(t time.Time, head uint64, killAt time.Time) {
	if c.reconnected {
		return
	}
	c.reconnected, c.target = true, head
	switch {
	case c.lastBeforeKill >= head:
		c.at = killAt
	default:
		for _, e := range c.early {
			if e.index >= head {
				c.at = e.at
				break
			}
		}
	}
	c.early = nil
}

// stormReader is one native SSE reader. Its fields are its goroutine's
// until the readers stop, except lastSeen.
type stormReader struct {
	id       int
	seq      seqCheck
	catch    catchUp
	lastSeen atomic.Uint64 // seq.last, for the waiting scenario

	opened      bool      // its first stream is open
	resumed     bool      // it reconnected to a surviving node after the kill
	resumeNode  int       // that node
	resumeAfter uint64    // the cursor it resumed from
	firstAfter  uint64    // the first index it received after resuming (0: none)
	reconnectAt time.Time // the first byte of that stream
	brokeAt     time.Time // when its stream on the victim ended after the kill
	afterResume int64     // messages received after resuming
	failedDials int       // stream requests that failed (connection or status)
	earlyBreaks int       // streams that ended before the kill
	laterBreaks int       // streams on a survivor that ended before the scenario did
	resets      int       // "event: reset" received
	formatErr   string    // the first SSE format error
	lastErr     string    // why the last stream or request ended
}

// problems lists what the reader got wrong, once the readers have
// stopped; final is the last committed index.
func (r *stormReader) problems(final uint64) []string {
	var p []string
	if r.seq.gaps > 0 {
		p = append(p, fmt.Sprintf("%d gap(s), %d index(es) missing", r.seq.gaps, r.seq.missed))
	}
	if r.seq.dups > 0 {
		p = append(p, fmt.Sprintf("%d duplicate(s)", r.seq.dups))
	}
	if r.seq.first != "" {
		p = append(p, "first: "+r.seq.first)
	}
	if r.resets > 0 {
		p = append(p, fmt.Sprintf("%d reset event(s)", r.resets))
	}
	if r.formatErr != "" {
		p = append(p, "stream format: "+r.formatErr)
	}
	if !r.resumed {
		p = append(p, "never reconnected to a surviving node")
	}
	if r.seq.last != final {
		p = append(p, fmt.Sprintf("ended at index %d, the last committed index is %d", r.seq.last, final))
	}
	return p
}

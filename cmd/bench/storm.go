package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The storm scenario: a node dies and its clients resume elsewhere.
//
// Native SSE readers all follow one hub on a follower (the victim), from
// the current end of the log. A paced REST publisher posts to the leader
// for the whole scenario. After stormSteady of steady delivery the victim
// is killed with SIGKILL; every reader sees its stream break and at once
// reconnects to a surviving node (round-robin over the survivors) with
// after=<the last id it saw>, as a client does. Publishing stops -duration
// after the kill; then the benchmark waits for every reader to reach the
// last committed index. It times all of it and counts the indexes each
// reader missed or received twice; that none are is asserted by
// test/cluster's TestReconnectStorm.

const (
	// stormHub is the hub the readers follow and the publisher posts to.
	stormHub = "bench_storm"
	// stormSteady is how long the readers receive from the victim
	// before it is killed.
	stormSteady = time.Second
	// stormIdle ends the wait for the readers to reach the last index
	// once none of them has received anything for this long.
	stormIdle = 15 * time.Second
	// stormMaxWait bounds that wait in any case.
	stormMaxWait = 2 * time.Minute
	// stormWorkers is the publisher's requests in flight at most.
	stormWorkers = 64
	// stormOpening is how many of the first streams are opened at once.
	stormOpening = 64
)

// stormRun is the shared state of the readers.
type stormRun struct {
	cl        *cluster
	hc        *http.Client
	victim    int
	survivors []int
	head      *atomic.Uint64            // highest index acknowledged to the publisher
	killAt    atomic.Pointer[time.Time] // nil until the kill
	bufSize   int
	openSem   chan struct{}

	opened, reconnected, delivered *counter
	beforeKill, afterKill          histogram // publish → delivery, by delivery time
}

// stormReader is one native SSE reader. Its fields are its goroutine's
// until the readers stop, except lastSeen.
type stormReader struct {
	id           int
	last         uint64        // the highest index received: the cursor to resume from
	lastSeen     atomic.Uint64 // last, for the waiting scenario
	catch        catchUp
	missed, dups int64     // indexes skipped over; indexes not above the last
	opened       bool      // its first stream is open
	resumed      bool      // it reconnected to a surviving node after the kill
	reconnectAt  time.Time // the first byte of that stream
	brokeAt      time.Time // when its stream on the victim ended after the kill
	afterResume  int64     // messages received after resuming
	lastErr      string    // why the last stream or request ended
}

// newStreamClient returns an HTTP client for conns long-lived streams: no
// overall timeout (a stream lasts the whole scenario), a bound on the
// wait for the response headers, and small buffers.
func newStreamClient(conns int) *http.Client {
	c := newHTTPClient(conns)
	c.Timeout = 0
	t := c.Transport.(*http.Transport)
	t.ResponseHeaderTimeout = 10 * time.Second
	t.ReadBufferSize, t.WriteBufferSize = 8<<10, 1<<10
	return c
}

// read runs one reader until ctx ends: on the victim first, then, once
// the victim is killed, on a surviving node, reconnecting from its last
// index whenever a stream ends.
func (s *stormRun) read(ctx context.Context, r *stormReader) {
	node, tries := s.victim, 0
	for ctx.Err() == nil {
		killAt := s.killAt.Load()
		if killAt != nil && node == s.victim {
			node = s.survivors[(r.id+tries)%len(s.survivors)]
		}
		after := r.last
		if !r.opened {
			select {
			case s.openSem <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		resp, err := openStream(ctx, s.hc, s.cl.nodes[node].url, stormHub, after)
		if !r.opened {
			<-s.openSem
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.lastErr = err.Error()
			if killAt != nil {
				tries++
				node = s.survivors[(r.id+tries)%len(s.survivors)]
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		now := time.Now()
		if !r.opened {
			r.opened = true
			s.opened.Add(1)
		}
		if killAt != nil && !r.resumed && node != s.victim {
			r.resumed, r.reconnectAt = true, now
			r.catch.reconnect(now, s.head.Load(), *killAt)
			s.reconnected.Add(1)
		}
		err = readSSE(bufio.NewReaderSize(resp.Body, s.bufSize), func(id uint64, data []byte) { s.onMessage(r, id, data) })
		resp.Body.Close()
		if ctx.Err() != nil {
			return
		}
		r.lastErr = fmt.Sprint(err)
		if s.killAt.Load() != nil && node == s.victim && r.brokeAt.IsZero() {
			r.brokeAt = time.Now()
		}
	}
}

// onMessage counts, times and places one message a reader received.
func (s *stormRun) onMessage(r *stormReader, id uint64, data []byte) {
	now := time.Now()
	var killAt time.Time
	if k := s.killAt.Load(); k != nil {
		killAt = *k
	}
	switch {
	case id <= r.last:
		r.dups++
	default:
		r.missed += int64(id - r.last - 1)
		r.last = id
	}
	r.lastSeen.Store(r.last)
	r.catch.delivered(now, r.last, killAt)
	if r.resumed {
		r.afterResume++
	}
	if sent, ok := sentFromData(data); ok {
		lat := now.Sub(time.Unix(0, sent))
		if killAt.IsZero() || now.Before(killAt) {
			s.beforeKill.Record(lat)
		} else {
			s.afterKill.Record(lat)
		}
	}
	s.delivered.Add(1)
}

// readSSE reads a native cursor stream (docs/protocol.md) until it ends:
// onMessage gets every event that has an id (the message index) and its
// data, which is valid only during the call. It returns the reader's
// error (io.EOF for a clean end).
func readSSE(br *bufio.Reader, onMessage func(id uint64, data []byte)) error {
	var id int64
	var hasID bool
	var data []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		field, value, _ := bytes.Cut(line, []byte(": "))
		switch {
		case len(line) == 0: // the end of an event
			if hasID && len(data) > 0 {
				onMessage(uint64(id), data)
			}
			hasID, data = false, data[:0]
		case string(field) == "id":
			id, hasID = atoi(value)
		case string(field) == "data":
			data = append(data, value...)
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

// catchUp times when a reader caught up with the head after the kill. The
// head is the highest index committed (acknowledged with 202 to the
// publisher) at the moment the reader reconnected: the first byte of its
// first stream on a surviving node. The reader caught up at the first time
// at or after the kill when the last index it had received was at least
// that head. Because the head is known only once the reader reconnects,
// the indexes it still read from the dead node's socket after the kill are
// kept until then.
type catchUp struct {
	lastBeforeKill uint64 // the last index received before the kill
	early          []indexAt
	reconnected    bool
	target         uint64    // the head when the reader reconnected
	at             time.Time // when it caught up; zero until then
}

// indexAt is a reader's last index from a given time on.
type indexAt struct {
	index uint64
	at    time.Time
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
	if c.lastBeforeKill >= head {
		c.at = killAt
	}
	for _, e := range c.early {
		if c.at.IsZero() && e.index >= head {
			c.at = e.at
		}
	}
	c.early = nil
}

// storm: see the comment at the top of this file.
func (b *bench) storm(ctx context.Context, r *result) error {
	cfg := b.cfg
	leader, err := b.cl.leader(ctx)
	if err != nil {
		return err
	}
	// A follower; with -pprof, the window profiles (leader+1), so the
	// victim is the other one.
	victim := (leader + len(b.cl.nodes) - 1) % len(b.cl.nodes)
	var survivors []int
	var snames []string
	for i := range b.cl.nodes {
		if i != victim {
			survivors, snames = append(survivors, i), append(snames, b.cl.nodes[i].id)
		}
	}
	st, err := b.cl.status(ctx, b.cl.nodes[leader])
	if err != nil {
		return err
	}
	start := st.Messages.LastMessage
	vname := b.cl.nodes[victim].id
	r.Params = map[string]any{"readers": cfg.stormReaders, "rate": cfg.stormRate, "size": cfg.size,
		"duration_s": cfg.duration.Seconds(), "victim": vname, "steady_s": stormSteady.Seconds()}
	r.Description = fmt.Sprintf("%s native SSE readers of one hub on follower %s from the current end; a REST publisher → leader %s at %s msgs/s; "+
		"after %s %s is SIGKILLed and every reader resumes with after=<last id> on %s (round-robin); publishing goes on for %s after the kill. "+
		"Reconnected = first byte of the new stream; caught up = the first time after the kill that the reader's last id ≥ the highest index "+
		"committed (202 to the publisher) when it reconnected",
		human(float64(cfg.stormReaders)), vname, b.cl.nodes[leader].id, rateText(cfg.stormRate), stormSteady, vname,
		strings.Join(snames, " and "), cfg.duration)

	var head atomic.Uint64
	head.Store(start)
	s := &stormRun{cl: b.cl, hc: newStreamClient(cfg.stormReaders), victim: victim, survivors: survivors, head: &head,
		bufSize: max(16<<10, 2*cfg.size+256), openSem: make(chan struct{}, stormOpening),
		opened: &counter{name: "streams"}, reconnected: &counter{name: "reconnected"}, delivered: &counter{name: "delivered"}}
	defer s.hc.CloseIdleConnections()
	readers := make([]*stormReader, cfg.stormReaders)
	rctx, cancelReaders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stopReaders := func() {
		cancelReaders()
		wg.Wait()
	}
	defer stopReaders()
	for i := range readers {
		rd := &stormReader{id: i, last: start}
		rd.lastSeen.Store(start)
		readers[i] = rd
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.read(rctx, rd)
		}()
	}
	if err := poll(ctx, 60*time.Second, 10*time.Millisecond, func() (bool, string) {
		return s.opened.Load() >= int64(len(readers)), fmt.Sprintf("%d open, the last error of reader 0: %s", s.opened.Load(), readers[0].lastErr)
	}); err != nil {
		return fmt.Errorf("open %d streams on %s: %w", len(readers), vname, err)
	}

	var ack histogram
	ok, errs := &counter{name: "published"}, &counter{name: "errors"}
	w := b.start(ctx, r, ok, s.delivered, s.reconnected, errs)
	defer w.stop(ctx)
	loadc := make(chan loadResult, 1)
	go func() {
		loadc <- b.publishLoad(ctx, loadSpec{hub: stormHub, nodes: []int{leader}, rate: cfg.stormRate, workers: stormWorkers,
			duration: stormSteady + cfg.duration, ack: &ack, ok: ok, errs: errs, head: &head})
	}()
	select {
	case <-time.After(stormSteady):
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		<-loadc
		return ctx.Err()
	}
	headAtKill := head.Load()
	killAt := time.Now()
	s.killAt.Store(&killAt)
	b.logf("storm: killing %s (pid %d) with SIGKILL; %s committed so far", vname, b.cl.nodes[victim].Pid(), human(float64(headAtKill-start)))
	b.cl.nodes[victim].Stop(syscall.SIGKILL, 10*time.Second)
	exited := time.Since(killAt)
	load := <-loadc
	published := time.Now()
	if load.committed == 0 {
		return fmt.Errorf("%w: %v", errNoMessages, load.firstError)
	}

	// The last committed index: the publisher's highest, or the leader's
	// if higher.
	final := load.maxIndex
	if st, err := b.cl.status(ctx, b.cl.nodes[leader]); err == nil {
		final = max(final, st.Messages.LastMessage)
	}
	var lastSum uint64
	lastChange := time.Now()
	waitErr := poll(ctx, stormMaxWait, 20*time.Millisecond, func() (bool, string) {
		behind, sum := 0, uint64(0)
		for _, rd := range readers {
			sum += rd.lastSeen.Load()
			if rd.lastSeen.Load() < final {
				behind++
			}
		}
		if sum != lastSum {
			lastSum, lastChange = sum, time.Now()
		}
		return behind == 0 || time.Since(lastChange) > stormIdle, fmt.Sprintf("%d readers behind", behind)
	})
	allAt := time.Since(published)
	w.stop(ctx)
	stopReaders()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var broke, reconnect, caught histogram
	var lastReconnect time.Duration
	var afterResume, missed, dups int64
	var resumed, behind int
	for _, rd := range readers {
		if rd.resumed {
			resumed++
			d := rd.reconnectAt.Sub(killAt)
			reconnect.Record(d)
			lastReconnect = max(lastReconnect, d)
		}
		if !rd.brokeAt.IsZero() {
			broke.Record(rd.brokeAt.Sub(killAt))
		}
		if !rd.catch.at.IsZero() {
			caught.Record(rd.catch.at.Sub(killAt))
		}
		afterResume += rd.afterResume
		missed += rd.missed
		dups += rd.dups
		if rd.last < final {
			behind++
		}
	}
	r.add("readers", float64(len(readers)), "streams")
	r.add("messages published", float64(load.committed), "msgs")
	r.add("publish rate", float64(load.committed)/load.elapsed.Seconds(), "msg/s")
	r.add("committed before the kill", float64(headAtKill-start), "msgs")
	r.add("kill → victim process exited", float64(exited)/float64(time.Millisecond), "ms")
	r.lat("kill → reader saw its stream end", broke.Summary())
	r.lat("kill → reader reconnected (first byte of the new stream)", reconnect.Summary())
	r.lat("kill → reader caught up with the head", caught.Summary())
	if lastReconnect > 0 {
		r.add("resumes/s (readers ÷ kill → last reader reconnected)", float64(resumed)/lastReconnect.Seconds(), "resumes/s")
	}
	r.add("messages received after the reconnect", float64(afterResume), "msgs")
	r.add("gaps (indexes missed)", float64(missed), "msgs")
	r.add("duplicates", float64(dups), "msgs")
	if behind == 0 && waitErr == nil {
		r.add("publishing stopped → every reader at the last index", float64(allAt)/float64(time.Millisecond), "ms")
	} else {
		r.addNote("%d readers had not reached the last committed index %d when the wait ended (nothing arrived for %s, or %s passed)",
			behind, final, stormIdle, stormMaxWait)
	}
	r.lat("publish → 202 (commit)", ack.Summary())
	r.lat("publish → delivery, before the kill", s.beforeKill.Summary())
	r.lat("publish → delivery, after the kill", s.afterKill.Summary())
	if n := len(readers) - resumed; n > 0 {
		r.addNote("%d readers never reconnected to a surviving node", n)
	}
	noteLoad(r, load, errs)
	return nil
}

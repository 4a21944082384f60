package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The Redis Streams peer: one redis-server (from PATH) on 127.0.0.1 with
// its append-only file fsynced before every reply (appendonly yes,
// appendfsync always) and no RDB snapshots; publishers XADD on a
// connection each and wait for the reply; readers XREAD BLOCK from the
// stream's start, timing each entry from the stamp in its first 8 bytes.
// The client is a minimal RESP2 one: the benchmark needs only XADD, XREAD,
// DEL and PING.

const redisKey = "bench"

// respConn is one connection speaking RESP2.
type respConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func dialRESP(addr string) (*respConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("redis dial: %w", err)
	}
	return &respConn{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriterSize(c, 16<<10)}, nil
}

// do sends one command and reads its reply.
func (r *respConn) do(args ...[]byte) (any, error) {
	fmt.Fprintf(r.bw, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(r.bw, "$%d\r\n", len(a))
		r.bw.Write(a)
		r.bw.WriteString("\r\n")
	}
	if err := r.bw.Flush(); err != nil {
		return nil, fmt.Errorf("redis write: %w", err)
	}
	return r.read()
}

func (r *respConn) line() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("redis read: %w", err)
	}
	if len(l) < 3 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("redis: malformed line %q", l)
	}
	return l[:len(l)-2], nil
}

// read reads one reply: a string (+), an error (-), an int64 (:), a
// []byte or nil ($) or a []any or nil (*).
func (r *respConn) read() (any, error) {
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	switch l[0] {
	case '+':
		return string(l[1:]), nil
	case '-':
		return nil, fmt.Errorf("redis: %s", l[1:])
	case ':':
		return strconv.ParseInt(string(l[1:]), 10, 64)
	case '$':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil || n < -1 || n > 64<<20 {
			return nil, fmt.Errorf("redis: bad bulk length %q", l)
		}
		if n == -1 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := readFull(r.br, b); err != nil {
			return nil, err
		}
		return b[:n], nil
	case '*':
		n, err := strconv.Atoi(string(l[1:]))
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("redis: bad array length %q", l)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = r.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unknown reply %q", l)
}

func readFull(br *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := br.Read(b[n:])
		n += m
		if err != nil {
			return n, fmt.Errorf("redis read: %w", err)
		}
	}
	return n, nil
}

func (r *respConn) close() { _ = r.c.Close() }

// redisServer is one running redis-server.
type redisServer struct {
	addr string
	pid  int
	stop func()
}

func startRedis(ctx context.Context, path string) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "backplane-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	rs := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]), "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	rs.pid = cmd.Process.Pid
	rs.stop = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	})
	err = poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		c, err := dialRESP(rs.addr)
		if err != nil {
			return false, err.Error()
		}
		defer c.close()
		_, err = c.do([]byte("PING"))
		return err == nil, fmt.Sprintf("ping: %v", err)
	})
	if err != nil {
		rs.stop()
		return nil, err
	}
	return rs, nil
}

// redisReaders follow the stream from its start until stopped.
type redisReaders struct {
	conns    []*respConn
	consume  histogram
	received counter
	wg       sync.WaitGroup
}

func (rs *redisServer) startReaders(n int) (*redisReaders, error) {
	rr := &redisReaders{}
	for range n {
		c, err := dialRESP(rs.addr)
		if err != nil {
			rr.stop()
			return nil, err
		}
		rr.conns = append(rr.conns, c)
	}
	for _, c := range rr.conns {
		rr.wg.Go(func() {
			last := []byte("0")
			for {
				v, err := c.do([]byte("XREAD"), []byte("COUNT"), []byte("1000"), []byte("BLOCK"), []byte("1000"),
					[]byte("STREAMS"), []byte(redisKey), last)
				if err != nil {
					return // closed
				}
				now := time.Now()
				if id := rr.entries(v, now); id != nil {
					last = id
				}
			}
		})
	}
	return rr, nil
}

// entries records XREAD's entries and returns the last id.
func (rr *redisReaders) entries(v any, now time.Time) []byte {
	streams, _ := v.([]any)
	var last []byte
	for _, s := range streams {
		pair, _ := s.([]any)
		if len(pair) != 2 {
			continue
		}
		list, _ := pair[1].([]any)
		for _, e := range list {
			ent, _ := e.([]any)
			if len(ent) != 2 {
				continue
			}
			last, _ = ent[0].([]byte)
			fields, _ := ent[1].([]any)
			if len(fields) == 2 {
				if d, ok := fields[1].([]byte); ok && len(d) >= 8 {
					rr.consume.Record(now.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64(d)))))
				}
			}
			rr.received.Add(1)
		}
	}
	return last
}

func (rr *redisReaders) stop() {
	for _, c := range rr.conns {
		c.close()
	}
	rr.wg.Wait()
}

// xadd appends one stamped message and waits for the reply.
func xadd(c *respConn, data []byte) error {
	binary.LittleEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	_, err := c.do([]byte("XADD"), []byte(redisKey), []byte("*"), []byte("d"), data)
	return err
}

// redisBaselines measures Redis Streams at each in-flight count and at
// the paced rate.
func (b *bench) redisBaselines(ctx context.Context, rep *report, path string) error {
	b.logf("peer: Redis Streams, %s, appendfsync always", path)
	rs, err := startRedis(ctx, path)
	if err != nil {
		return err
	}
	b.cleanups.add(rs.stop)
	defer rs.stop()
	const readers = 4
	for _, n := range b.cfg.peerInflight {
		r, err := b.redisRun(ctx, rs, n, 0, readers)
		if err != nil {
			return err
		}
		rep.Baselines = append(rep.Baselines, r)
	}
	if b.cfg.rate > 0 {
		r, err := b.redisRun(ctx, rs, 0, b.cfg.rate, readers)
		if err != nil {
			return err
		}
		rep.Baselines = append(rep.Baselines, r)
	}
	return nil
}

// redisRun measures inflight publishers as fast as they go, or (inflight
// 0) publishes paced at rate over a pool of connections.
func (b *bench) redisRun(ctx context.Context, rs *redisServer, inflight int, rate float64, readers int) (*result, error) {
	admin, err := dialRESP(rs.addr)
	if err != nil {
		return nil, err
	}
	defer admin.close()
	if _, err := admin.do([]byte("DEL"), []byte(redisKey)); err != nil {
		return nil, err
	}
	rr, err := rs.startReaders(readers)
	if err != nil {
		return nil, err
	}
	workers := inflight
	if inflight == 0 {
		workers = 64 // the paced load's pool: enough that a publish never waits for a connection
	}
	pool := make(chan *respConn, workers)
	for range workers {
		c, err := dialRESP(rs.addr)
		if err != nil {
			rr.stop()
			return nil, err
		}
		pool <- c
	}
	var ack histogram
	ok, errs := &counter{name: "acked"}, &counter{name: "errors"}
	rr.received.name = "read"
	name := fmt.Sprintf("redis %d in flight", inflight)
	if inflight == 0 {
		name = fmt.Sprintf("redis at %s msgs/s", human(rate))
	}
	label := fmt.Sprintf("%d in flight", inflight)
	if inflight == 0 {
		label = fmt.Sprintf("at %s msgs/s", human(rate))
	}
	prog := startProgress(b.stderr, name, ok, errs, &rr.received)
	meter := startUsage([]proc{{name: "redis", pid: rs.pid}})
	var firstErr error
	var once sync.Once
	one := func(c *respConn, data []byte) {
		t := time.Now()
		if err := xadd(c, data); err != nil {
			errs.Add(1)
			once.Do(func() { firstErr = err })
			return
		}
		ack.Record(time.Since(t))
		ok.Add(1)
	}
	start := time.Now()
	var wg sync.WaitGroup
	if inflight > 0 {
		for range inflight {
			wg.Go(func() {
				c, data := <-pool, make([]byte, b.cfg.size)
				defer func() { pool <- c }()
				for ctx.Err() == nil && time.Since(start) < b.cfg.duration && errs.Load() == 0 {
					one(c, data)
				}
			})
		}
	} else {
		interval := time.Duration(float64(time.Second) / rate)
		for next := start; time.Since(start) < b.cfg.duration && ctx.Err() == nil; next = next.Add(interval) {
			time.Sleep(time.Until(next))
			wg.Go(func() {
				c := <-pool
				defer func() { pool <- c }()
				one(c, make([]byte, b.cfg.size))
			})
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	waitDelivered(ctx, &rr.received, ok.Load()*int64(readers), 3*time.Second)
	prog.Stop()
	rr.stop()
	close(pool)
	for c := range pool {
		c.close()
	}
	if ok.Load() == 0 {
		return nil, errors.Join(errors.New("redis: nothing acknowledged"), firstErr)
	}
	r := &result{Name: "Redis Streams appendfsync always, " + label,
		Description: fmt.Sprintf("1 redis-server, appendonly yes, appendfsync always; XADD on a connection per publisher; %d XREAD BLOCK readers", readers),
		Params:      map[string]any{"inflight": inflight, "rate": rate, "readers": readers}}
	r.Usage = meter.Stop()
	r.add("committed messages/s", float64(ok.Load())/secs, "msg/s")
	r.lat("ack", ack.Summary())
	r.lat("publish → consume", rr.consume.Summary())
	if errs.Load() > 0 {
		r.addNote("%d publish errors, first: %v", errs.Load(), firstErr)
	}
	if inflight > 0 {
		r.versus = []versus{{peerScenario(inflight), "committed publishes/s", "committed messages/s"}}
	} else {
		r.versus = []versus{{"broadcast", "publish → 202 (commit)", "ack"},
			{"broadcast", "publish → delivery, other nodes", "publish → consume"}}
	}
	return r, nil
}

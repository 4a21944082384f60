package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis Streams peer: one redis-server (from PATH) on 127.0.0.1 with
// its append-only file fsynced before every reply (appendonly yes,
// appendfsync always) and no RDB snapshots; publishers XADD on a
// connection each and wait for the reply; readers XREAD BLOCK from the
// stream's start, timing each entry from the stamp in its first 8 bytes.

const (
	redisKey   = "bench"
	redisField = "d" // the field holding an entry's stamped data
)

// redisClient returns a go-redis client of one connection to addr, dialled
// and checked with a PING so that its first command pays no dial. It
// speaks RESP2, sends no CLIENT SETINFO, dials once and never retries a
// command (a failure is an error the benchmark counts or startRedis polls
// again) and sets no socket timeouts (a publisher waits for its reply
// however long the fsync takes; XREAD BLOCK sets its own).
func redisClient(ctx context.Context, addr string) (*redis.Client, error) {
	c := redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2,
		DisableIdentity: true,
		PoolSize:        1,
		MaxActiveConns:  1,
		DialerRetries:   1, // attempts in all
		MaxRetries:      -1,
		ReadTimeout:     -1,
		WriteTimeout:    -1,
	})
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis %s: ping: %w", addr, err)
	}
	return c, nil
}

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
		c, err := redisClient(ctx, rs.addr)
		if err != nil {
			return false, err.Error()
		}
		_ = c.Close()
		return true, ""
	})
	if err != nil {
		rs.stop()
		return nil, err
	}
	return rs, nil
}

// redisReaders follow the stream from its start until stopped.
type redisReaders struct {
	clients  []*redis.Client
	consume  histogram
	received counter
	wg       sync.WaitGroup
}

func (rs *redisServer) startReaders(ctx context.Context, n int) (*redisReaders, error) {
	rr := &redisReaders{}
	for range n {
		c, err := redisClient(ctx, rs.addr)
		if err != nil {
			rr.stop()
			return nil, err
		}
		rr.clients = append(rr.clients, c)
	}
	for _, c := range rr.clients {
		rr.wg.Go(func() {
			last := "0"
			for {
				streams, err := c.XRead(context.Background(), &redis.XReadArgs{
					Streams: []string{redisKey, last}, Count: 1000, Block: time.Second}).Result()
				if errors.Is(err, redis.Nil) {
					continue // nothing new within the block
				}
				if err != nil {
					return // closed
				}
				now := time.Now()
				if id := rr.entries(streams, now); id != "" {
					last = id
				}
			}
		})
	}
	return rr, nil
}

// entries records XREAD's entries and returns the last id ("" for none).
func (rr *redisReaders) entries(streams []redis.XStream, now time.Time) string {
	var last string
	for _, s := range streams {
		for _, m := range s.Messages {
			last = m.ID
			if d, ok := m.Values[redisField].(string); ok && len(d) >= 8 {
				rr.consume.Record(now.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64([]byte(d[:8]))))))
			}
			rr.received.Add(1)
		}
	}
	return last
}

// stop closes the readers' clients, which ends their XREADs, and waits for
// them.
func (rr *redisReaders) stop() {
	for _, c := range rr.clients {
		_ = c.Close()
	}
	rr.wg.Wait()
}

// xadd appends one stamped message and waits for the reply.
func xadd(ctx context.Context, c *redis.Client, data []byte) error {
	binary.LittleEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: redisKey, ID: "*", Values: []any{redisField, data}}).Err(); err != nil {
		return fmt.Errorf("redis XADD: %w", err)
	}
	return nil
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
	admin, err := redisClient(ctx, rs.addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := admin.Del(ctx, redisKey).Err(); err != nil {
		return nil, fmt.Errorf("redis DEL %s: %w", redisKey, err)
	}
	rr, err := rs.startReaders(ctx, readers)
	if err != nil {
		return nil, err
	}
	workers := inflight
	if inflight == 0 {
		workers = 64 // the paced load's pool: enough that a publish never waits for a connection
	}
	pool := make(chan *redis.Client, workers)
	closePool := func() {
		close(pool)
		for c := range pool {
			_ = c.Close()
		}
	}
	for range workers {
		c, err := redisClient(ctx, rs.addr)
		if err != nil {
			rr.stop()
			closePool()
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
	one := func(c *redis.Client, data []byte) {
		t := time.Now()
		if err := xadd(ctx, c, data); err != nil {
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
	closePool()
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

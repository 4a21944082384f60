package main

import (
	"context"
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
// stream's start (peerRun times each entry).

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

// open empties the stream and starts readers following it from its start
// and publishers connections, one per publisher, that the publishes share.
func (rs *redisServer) open(ctx context.Context, readers, publishers int) (*peerRun, error) {
	admin, err := redisClient(ctx, rs.addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := admin.Del(ctx, redisKey).Err(); err != nil {
		return nil, fmt.Errorf("redis DEL %s: %w", redisKey, err)
	}
	run := &peerRun{}
	var clients []*redis.Client
	var wg sync.WaitGroup
	pool := make(chan *redis.Client, publishers)
	run.close = func() {
		// Closing the readers' clients ends their XREADs.
		for _, c := range clients {
			_ = c.Close()
		}
		wg.Wait()
		close(pool)
		for c := range pool {
			_ = c.Close()
		}
	}
	run.publish = func(ctx context.Context, _ int, data []byte) error {
		c := <-pool
		defer func() { pool <- c }()
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: redisKey, ID: "*", Values: []any{redisField, data}}).Err(); err != nil {
			return fmt.Errorf("redis XADD: %w", err)
		}
		return nil
	}
	for i := range readers + publishers {
		c, err := redisClient(ctx, rs.addr)
		if err != nil {
			run.close()
			return nil, err
		}
		if i >= readers {
			pool <- c
			continue
		}
		clients = append(clients, c)
		wg.Go(func() {
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
				if id := run.entries(streams, time.Now()); id != "" {
					last = id
				}
			}
		})
	}
	return run, nil
}

// entries records XREAD's entries and returns the last id ("" for none).
func (run *peerRun) entries(streams []redis.XStream, now time.Time) string {
	var last string
	for _, s := range streams {
		for _, m := range s.Messages {
			last = m.ID
			d, _ := m.Values[redisField].(string)
			run.receive([]byte(d[:min(len(d), 8)]), now)
		}
	}
	return last
}

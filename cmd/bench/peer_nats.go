package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream peer: three nats-server instances embedded in this
// process as a cluster (routes on 127.0.0.1), JetStream with file storage
// and fsync after every write (sync_interval: always), one stream of
// replicas 3. Publishers wait for each publish's ack (the stream leader
// acknowledges after a quorum stored it), spread round robin over the
// three servers; readers are ordered push consumers, also spread over the
// servers, timing each message from the stamp in its first 8 bytes.

const natsStream, natsSubject = "BENCH", "bench.msgs"

// natsCluster is three running embedded servers.
type natsCluster struct {
	servers []*server.Server
	dir     string
	stop    func()
}

// freePorts returns n TCP ports free on 127.0.0.1 just now.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// startNATS starts three JetStream servers in a cluster under a new temp
// dir, with fsync after every write, and waits until JetStream has a
// meta leader.
func startNATS(ctx context.Context) (*natsCluster, error) {
	dir, err := os.MkdirTemp("", "backplane-bench-nats-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	nc := &natsCluster{dir: dir}
	nc.stop = sync.OnceFunc(func() {
		for _, s := range nc.servers {
			s.Shutdown()
		}
		for _, s := range nc.servers {
			s.WaitForShutdown()
		}
		_ = os.RemoveAll(dir)
	})
	routes, err := freePorts(3)
	if err != nil {
		nc.stop()
		return nil, err
	}
	var urls []*url.URL
	for _, p := range routes {
		urls = append(urls, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("nats%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("nats%d", i+1)),
			SyncAlways: true, SyncInterval: 2 * time.Minute, // what sync_interval: always sets
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: routes[i]},
			Routes:  urls, NoLog: true, NoSigs: true, MaxPayload: 1 << 20,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			nc.stop()
			return nil, fmt.Errorf("nats server %d: %w", i+1, err)
		}
		nc.servers = append(nc.servers, s)
		s.Start()
	}
	for _, s := range nc.servers {
		if !s.ReadyForConnections(20 * time.Second) {
			nc.stop()
			return nil, fmt.Errorf("nats server %s not ready", s.Name())
		}
	}
	err = poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		for _, s := range nc.servers {
			if s.JetStreamIsLeader() {
				return true, ""
			}
		}
		return false, "no JetStream meta leader"
	})
	if err != nil {
		nc.stop()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return nc, nil
}

// natsRun is one measurement: a fresh stream, connections to every
// server, and readers following the stream from its start.
type natsRun struct {
	conns     []*nats.Conn
	js        []jetstream.JetStream
	consumers []jetstream.ConsumeContext
	consume   histogram // stamp → message at a reader
	received  counter
}

// open makes the stream (replicas 3, file storage) and starts readers.
func (nc *natsCluster) open(ctx context.Context, readers int) (*natsRun, error) {
	run := &natsRun{}
	run.received.name = "read"
	for _, s := range nc.servers {
		c, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
		if err != nil {
			run.close()
			return nil, fmt.Errorf("nats connect: %w", err)
		}
		js, err := jetstream.New(c)
		if err != nil {
			run.close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		run.conns, run.js = append(run.conns, c), append(run.js, js)
	}
	_ = run.js[0].DeleteStream(ctx, natsStream) // from an earlier measurement
	err := poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, err := run.js[0].CreateStream(ctx, jetstream.StreamConfig{
			Name: natsStream, Subjects: []string{natsSubject}, Storage: jetstream.FileStorage, Replicas: 3,
		})
		return err == nil, fmt.Sprintf("create stream: %v", err)
	})
	if err != nil {
		run.close()
		return nil, err
	}
	for i := range readers {
		js := run.js[i%len(run.js)]
		cons, err := js.OrderedConsumer(ctx, natsStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			run.close()
			return nil, fmt.Errorf("ordered consumer: %w", err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			now := time.Now()
			if d := m.Data(); len(d) >= 8 {
				run.consume.Record(now.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64(d)))))
			}
			run.received.Add(1)
		})
		if err != nil {
			run.close()
			return nil, fmt.Errorf("consume: %w", err)
		}
		run.consumers = append(run.consumers, cc)
	}
	return run, nil
}

func (run *natsRun) close() {
	for _, cc := range run.consumers {
		cc.Stop()
	}
	if len(run.js) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = run.js[0].DeleteStream(ctx, natsStream)
		cancel()
	}
	for _, c := range run.conns {
		c.Close()
	}
}

// publish sends one stamped message and waits for its ack.
func (run *natsRun) publish(ctx context.Context, i int, data []byte) error {
	binary.LittleEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	_, err := run.js[i%len(run.js)].Publish(ctx, natsSubject, data)
	return err
}

// waitReaders waits until every reader has the published messages, or
// for a few seconds of no progress.
func (run *natsRun) waitReaders(ctx context.Context, want int64) {
	waitDelivered(ctx, &run.received, want, 3*time.Second)
}

// natsBaselines measures JetStream at each in-flight count, as fast as
// it acknowledges, and at the paced rate.
func (b *bench) natsBaselines(ctx context.Context, rep *report) error {
	b.logf("peer: NATS JetStream R3, three embedded servers, file storage, fsync always")
	nc, err := startNATS(ctx)
	if err != nil {
		return err
	}
	b.cleanups.add(nc.stop)
	defer nc.stop()
	const readers = 4
	for _, inflight := range b.cfg.peerInflight {
		r, err := b.natsThroughput(ctx, nc, inflight, readers)
		if err != nil {
			return err
		}
		rep.Baselines = append(rep.Baselines, r)
	}
	if b.cfg.rate <= 0 {
		return nil
	}
	r, err := b.natsPaced(ctx, nc, readers)
	if err != nil {
		return err
	}
	rep.Baselines = append(rep.Baselines, r)
	return nil
}

func (b *bench) natsThroughput(ctx context.Context, nc *natsCluster, inflight, readers int) (*result, error) {
	run, err := nc.open(ctx, readers)
	if err != nil {
		return nil, err
	}
	defer run.close()
	var ack histogram
	ok, errs := &counter{name: "acked"}, &counter{name: "errors"}
	prog := startProgress(b.stderr, fmt.Sprintf("jetstream %d in flight", inflight), ok, errs, &run.received)
	meter := startUsage(nil)
	start := time.Now()
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := range inflight {
		wg.Go(func() {
			data := make([]byte, b.cfg.size)
			for ctx.Err() == nil && time.Since(start) < b.cfg.duration {
				t := time.Now()
				if err := run.publish(ctx, w, data); err != nil {
					errs.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				ack.Record(time.Since(t))
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	run.waitReaders(ctx, ok.Load()*int64(readers))
	prog.Stop()
	r := &result{Name: fmt.Sprintf("JetStream R3 fsync always, %d in flight", inflight),
		Description: fmt.Sprintf("3 embedded nats-servers, file storage, sync always; %d publishers waiting for acks over the 3 servers; %d ordered consumers", inflight, readers),
		Params:      map[string]any{"inflight": inflight, "readers": readers}}
	r.Usage = meter.Stop()
	if ok.Load() == 0 {
		return nil, fmt.Errorf("jetstream: nothing acknowledged: %v", firstErr)
	}
	r.add("committed messages/s", float64(ok.Load())/secs, "msg/s")
	r.lat("ack", ack.Summary())
	r.add("reader deliveries", float64(run.received.Load())/float64(ok.Load()*int64(readers)), "of published × readers")
	if errs.Load() > 0 {
		r.addNote("%d publish errors, first: %v", errs.Load(), firstErr)
	}
	r.versus = []versus{{peerScenario(inflight), "committed publishes/s", "committed messages/s"}}
	return r, nil
}

func (b *bench) natsPaced(ctx context.Context, nc *natsCluster, readers int) (*result, error) {
	run, err := nc.open(ctx, readers)
	if err != nil {
		return nil, err
	}
	defer run.close()
	var ack histogram
	ok, errs := &counter{name: "acked"}, &counter{name: "errors"}
	prog := startProgress(b.stderr, fmt.Sprintf("jetstream at %s msgs/s", human(b.cfg.rate)), ok, errs, &run.received)
	meter := startUsage(nil)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / b.cfg.rate)
	var wg sync.WaitGroup
	i := 0
	for next := start; time.Since(start) < b.cfg.duration && ctx.Err() == nil; next = next.Add(interval) {
		time.Sleep(time.Until(next))
		w := i
		wg.Go(func() {
			data := make([]byte, b.cfg.size)
			t := time.Now()
			if err := run.publish(ctx, w, data); err != nil {
				errs.Add(1)
				return
			}
			ack.Record(time.Since(t))
			ok.Add(1)
		})
		i++
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	run.waitReaders(ctx, ok.Load()*int64(readers))
	prog.Stop()
	if ok.Load() == 0 {
		return nil, errors.New("jetstream paced: nothing acknowledged")
	}
	r := &result{Name: fmt.Sprintf("JetStream R3 fsync always, at %s msgs/s", human(b.cfg.rate)),
		Description: fmt.Sprintf("paced publishes over the 3 servers, each waiting for its ack; %d ordered consumers over the 3 servers", readers),
		Params:      map[string]any{"rate": b.cfg.rate, "readers": readers}}
	r.Usage = meter.Stop()
	r.add("committed messages/s", float64(ok.Load())/secs, "msg/s")
	r.lat("ack", ack.Summary())
	r.lat("publish → consume", run.consume.Summary())
	r.versus = []versus{{"broadcast", "publish → 202 (commit)", "ack"},
		{"broadcast", "publish → delivery, other nodes", "publish → consume"}}
	return r, nil
}

package main

import (
	"context"
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
// servers (peerRun times each message).

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

// open makes a fresh stream (replicas 3, file storage) with readers
// following it from its start; its publishers go round robin over one
// connection per server.
func (nc *natsCluster) open(ctx context.Context, readers, _ int) (*peerRun, error) {
	run := &peerRun{}
	var conns []*nats.Conn
	var jss []jetstream.JetStream
	var consumers []jetstream.ConsumeContext
	run.close = func() {
		for _, cc := range consumers {
			cc.Stop()
		}
		if len(jss) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = jss[0].DeleteStream(ctx, natsStream)
			cancel()
		}
		for _, c := range conns {
			c.Close()
		}
	}
	run.publish = func(ctx context.Context, w int, data []byte) error {
		_, err := jss[w%len(jss)].Publish(ctx, natsSubject, data)
		return err
	}
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
		conns, jss = append(conns, c), append(jss, js)
	}
	_ = jss[0].DeleteStream(ctx, natsStream) // from an earlier measurement
	err := poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, err := jss[0].CreateStream(ctx, jetstream.StreamConfig{
			Name: natsStream, Subjects: []string{natsSubject}, Storage: jetstream.FileStorage, Replicas: 3,
		})
		return err == nil, fmt.Sprintf("create stream: %v", err)
	})
	if err != nil {
		run.close()
		return nil, err
	}
	for i := range readers {
		cons, err := jss[i%len(jss)].OrderedConsumer(ctx, natsStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			run.close()
			return nil, fmt.Errorf("ordered consumer: %w", err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { run.receive(m.Data(), time.Now()) })
		if err != nil {
			run.close()
			return nil, fmt.Errorf("consume: %w", err)
		}
		consumers = append(consumers, cc)
	}
	return run, nil
}

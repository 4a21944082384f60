// Command bench measures a Backplane cluster the way a user sizing one
// would: it drives load only through the public interfaces (the REST API,
// SignalR WebSocket clients, the native cursor stream) and reports
// throughput, latency, CPU, memory and disk per scenario, next to
// baselines measured in the same run on the same machine: a bare
// hashicorp/raft cluster with Backplane's Raft settings (its three members
// in this process and, for broadcast's paced load, also in three
// processes of this binary, as the nodes are), and a raw
// gorilla/websocket broadcast.
//
// It builds ./cmd/node (or runs -binary) and starts a local three-node
// cluster on 127.0.0.1 with its data in a temp dir, removed at the end,
// also on Ctrl-C (a second Ctrl-C exits at once; the nodes die with it).
// It measures; what the cluster guarantees is tested under test/ (the
// reconnect storm's gaps and duplicates by test/cluster's
// TestReconnectStorm).
//
//	go run ./cmd/bench -scenario all -duration 5s -json bench.json
//
// With -peers it also measures the durable peers in the same run — NATS
// JetStream R3 (embedded) and Redis Streams (when redis-server is on
// PATH), both fsyncing every write — next to REST publishers at 1, 16 and
// 256 in flight, and prints the comparison as one table with ratios:
//
//	go run ./cmd/bench -scenario broadcast,hifreq-ws -peers -duration 5s -json peers.json
//
// See docs/performance.md for what each scenario measures.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scenarioNames lists the scenarios in the order "all" runs them. idle
// runs first, so that its "before" is a node no other scenario has grown;
// storm runs last, because it kills a node (parseFlags moves it last in
// any list).
var scenarioNames = []string{"idle", "broadcast", "chat", "hifreq", "hifreq-ws", "fanout", "reconnect", "storm"}

// config is the parsed command line.
type config struct {
	scenarios []string
	duration  time.Duration
	binary    string
	nodeArgs  []string

	clients      int     // broadcast subscribers, chat clients
	groupSize    int     // chat: clients per group
	chatRate     float64 // chat: sends per second per client
	rate         float64 // broadcast: publishes per second (0: as fast as possible)
	inflight     int     // broadcast: REST requests in flight at most
	publishers   int     // hifreq, reconnect: concurrent REST publishers; hifreq-ws: WebSocket publishers
	wsPipeline   int     // hifreq-ws: invocations outstanding per WebSocket publisher
	size         int     // bytes of message arguments
	fanoutConn   int     // fanout: connections per node
	fanoutMsgs   int     // fanout: single messages timed one by one
	fanoutWin    int     // fanout: messages outstanding in the stream phase
	resumeMsgs   int     // reconnect: messages missed by the resuming client
	idleConns    int     // idle: connections to one node
	idleEndpoint string  // idle: signalr, stream or signalr2
	stormReaders int     // storm: SSE readers on the node that is killed
	stormRate    float64 // storm: publishes per second

	baseline         bool
	baselineProcs    bool // also the paced bare Raft baseline in three processes
	baselineInflight []int
	peers            bool  // also the durable peers (JetStream, Redis Streams) and hifreq at each of peerInflight
	peerInflight     []int // publishers in flight for the peer comparison
	jsonPath         string
	pprofDir         string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var scenario, nodeArgs, inflights, peerInflights string
	fs.StringVar(&scenario, "scenario", "all", "comma-separated scenarios: all, "+strings.Join(scenarioNames, ", ")+" (docs/performance.md)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time of each scenario and baseline")
	fs.StringVar(&cfg.binary, "binary", "", "backplane binary to run (default: go build ./cmd/node into a temp dir)")
	fs.StringVar(&nodeArgs, "node-args", "", "extra flags for each node, space-separated (e.g. \"-unsafe-no-fsync\")")
	fs.IntVar(&cfg.clients, "clients", 30, "broadcast: WebSocket subscribers; chat: WebSocket clients (spread over the nodes)")
	fs.IntVar(&cfg.groupSize, "group-size", 5, "chat: clients per group")
	fs.Float64Var(&cfg.chatRate, "chat-rate", 10, "chat: SendToGroup invocations per second per client")
	fs.Float64Var(&cfg.rate, "rate", 1000, "broadcast: publishes per second to the leader (0: as fast as -inflight allows)")
	fs.IntVar(&cfg.inflight, "inflight", 256, "broadcast: REST publishes in flight at most")
	fs.IntVar(&cfg.publishers, "publishers", 64, "hifreq and reconnect: concurrent REST publishers; hifreq-ws: SignalR WebSocket publishers")
	fs.IntVar(&cfg.wsPipeline, "ws-pipeline", 4, fmt.Sprintf("hifreq-ws: SendToGroup invocations each WebSocket publisher keeps outstanding (1 to %d)", sentRing))
	fs.IntVar(&cfg.size, "size", 200, "bytes of each message's JSON arguments")
	fs.IntVar(&cfg.fanoutConn, "fanout-conns", 1000, "fanout: WebSocket connections per node")
	fs.IntVar(&cfg.fanoutMsgs, "fanout-msgs", 20, "fanout: messages timed one at a time to reach every connection")
	fs.IntVar(&cfg.fanoutWin, "fanout-window", rawQueueDepth, "fanout: messages outstanding in the stream phase (the raw WebSocket baseline's queue per connection)")
	fs.IntVar(&cfg.resumeMsgs, "resume-msgs", 10000, "reconnect: messages the resuming reader missed")
	fs.IntVar(&cfg.idleConns, "idle-conns", 2000, "idle: idle WebSocket connections to one node (the leader)")
	fs.StringVar(&cfg.idleEndpoint, "idle-endpoint", "signalr", "idle: whose WebSockets: signalr, stream (native cursor stream) or signalr2")
	fs.IntVar(&cfg.stormReaders, "storm-readers", 500, "storm: native SSE readers on the follower that is killed")
	fs.Float64Var(&cfg.stormRate, "storm-rate", 500, "storm: REST publishes per second to the leader, before and after the kill")
	fs.BoolVar(&cfg.baseline, "baseline", true, "also measure the bare Raft and raw WebSocket baselines and print ratios")
	fs.BoolVar(&cfg.baselineProcs, "baseline-procs", true, "also measure broadcast's paced bare Raft baseline with its members in three processes")
	fs.StringVar(&inflights, "baseline-inflight", "256,16", "bare Raft baseline: comma-separated numbers of applies in flight to measure (16 is Backplane's proposer limit)")
	fs.BoolVar(&cfg.peers, "peers", false, "the durable peers' comparison (docs/performance.md): hifreq once per -peer-inflight, bare Raft at 1 msg/entry at each, NATS JetStream R3 fsync always (embedded) and Redis Streams appendfsync always (when redis-server is on PATH), each with 4 readers")
	fs.StringVar(&peerInflights, "peer-inflight", "1,16,256", "-peers: comma-separated publishers in flight")
	fs.StringVar(&cfg.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&cfg.pprofDir, "pprof", "", "save CPU profiles of the leader and a follower during each scenario, and the leader's heap, into this directory")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range splitList(scenario) {
		switch {
		case s == "all":
			cfg.scenarios = append(cfg.scenarios, scenarioNames...)
		case slices.Contains(scenarioNames, s):
			cfg.scenarios = append(cfg.scenarios, s)
		default:
			return cfg, fmt.Errorf("-scenario %q: use all or %s", s, strings.Join(scenarioNames, ", "))
		}
	}
	// storm kills a node: it runs once, after the others.
	if slices.Contains(cfg.scenarios, "storm") {
		cfg.scenarios = append(slices.DeleteFunc(cfg.scenarios, func(s string) bool { return s == "storm" }), "storm")
	}
	for _, v := range splitList(inflights) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("-baseline-inflight %q: want positive integers", inflights)
		}
		cfg.baselineInflight = append(cfg.baselineInflight, n)
	}
	for _, v := range splitList(peerInflights) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("-peer-inflight %q: want positive integers", peerInflights)
		}
		cfg.peerInflight = append(cfg.peerInflight, n)
	}
	cfg.nodeArgs = strings.Fields(nodeArgs)
	switch {
	case cfg.duration <= 0:
		return cfg, fmt.Errorf("-duration must be positive")
	case min(cfg.clients, cfg.groupSize, cfg.publishers, cfg.inflight, cfg.fanoutConn, cfg.fanoutWin, cfg.idleConns, cfg.stormReaders) < 1:
		return cfg, fmt.Errorf("-clients, -group-size, -publishers, -inflight, -fanout-conns, -fanout-window, -idle-conns and -storm-readers must be at least 1")
	case cfg.stormRate <= 0:
		return cfg, fmt.Errorf("-storm-rate must be positive")
	case !slices.Contains(idleEndpoints, cfg.idleEndpoint):
		return cfg, fmt.Errorf("-idle-endpoint %q: want one of %s", cfg.idleEndpoint, strings.Join(idleEndpoints, ", "))
	case cfg.wsPipeline < 1 || cfg.wsPipeline > sentRing:
		return cfg, fmt.Errorf("-ws-pipeline must be from 1 to %d", sentRing)
	case cfg.size < 48:
		return cfg, fmt.Errorf("-size must be at least 48 (the timestamp, sequence and origin take room)")
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareMemberCmd {
		os.Exit(runBareRaftMember(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg, os.Stdout, os.Stderr))
}

func run(cfg config, stdout, stderr io.Writer) int {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			logf("interrupted: stopping (Ctrl-C again to exit at once)")
			cancel()
		}
		if _, ok := <-sigs; ok {
			os.Exit(130) // the nodes die with this process (Pdeathsig)
		}
	}()

	raiseFileLimit(logf)
	b := &bench{cfg: cfg, logf: logf, stderr: stderr}
	rep := newReport()
	err := b.runAll(ctx, rep)
	if err != nil {
		logf("%v", err)
	}
	if len(rep.Scenarios)+len(rep.Baselines) > 0 {
		rep.finish()
		rep.print(stdout)
		if cfg.peers {
			rep.printPeers(stdout, cfg)
		}
		if cfg.jsonPath != "" {
			if err := rep.writeJSON(cfg.jsonPath); err != nil {
				logf("%v", err)
				return 1
			}
			logf("results written to %s", cfg.jsonPath)
		}
	}
	switch {
	case ctx.Err() != nil:
		return 130
	case err != nil:
		return 1
	}
	for _, s := range rep.Scenarios {
		if s.Err != "" {
			return 1 // a scenario that could not run fails the run
		}
	}
	return 0
}

// raiseFileLimit raises the open-file limit to the hard maximum: the
// fan-out and idle scenarios hold thousands of sockets, and the nodes
// inherit the limit.
func raiseFileLimit(logf func(string, ...any)) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logf("read the open-file limit: %v", err)
		return
	}
	if lim.Cur >= lim.Max {
		logf("open-file limit is %d (already the hard maximum)", lim.Cur)
		return
	}
	old := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logf("raise the open-file limit from %d to %d: %v", old, lim.Max, err)
		return
	}
	logf("raised the open-file limit from %d to %d (the hard maximum)", old, lim.Max)
}

package node

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds a node's Prometheus collectors, on a registry of its own
// (no globals: several nodes can run in one process, as tests do).
type metrics struct {
	registry         *prometheus.Registry
	publishes        *prometheus.CounterVec
	entries          prometheus.Counter
	forwardedBatches prometheus.Counter
	batchCommands    prometheus.Histogram
	commitSeconds    prometheus.Histogram
}

// delayMetrics time an entry's way from the proposer's stamp (taken by the
// leader just before raft.Apply). They exist before the state machine, so
// it reports from its first apply. Across machines they include the
// clocks' difference.
type delayMetrics struct {
	apply, dispatch prometheus.Histogram
}

func newDelayMetrics() *delayMetrics {
	buckets := prometheus.ExponentialBuckets(0.00025, 1.5, 24) // 0.25 ms … ~2.8 s
	return &delayMetrics{
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backplane_apply_delay_seconds", Buckets: buckets,
			Help: "Time from the proposer's stamp on a Raft entry to its apply to this node's store.",
		}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backplane_dispatch_delay_seconds", Buckets: buckets,
			Help: "Time from the proposer's stamp on a message's entry to its queuing for this node's SignalR connections (messages with local recipients).",
		}),
	}
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backplane_publishes_total", Help: "Publishes answered, by outcome.",
		}, []string{"outcome"}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "backplane_raft_entries_proposed_total", Help: "Raft entries this node proposed as leader.",
		}),
		forwardedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "backplane_forwarded_batches_total", Help: "Command batches this node forwarded to the leader.",
		}),
		batchCommands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backplane_batch_commands", Help: "Commands per proposed entry or forwarded batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backplane_commit_seconds", Help: "Time from proposing an entry to its local apply (leader).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.publishes, m.entries, m.forwardedBatches, m.batchCommands, m.commitSeconds,
		n.delays.apply, n.delays.dispatch,
		gauge("backplane_raft_is_leader", "1 if this node is the Raft leader.", func() float64 {
			if n.raft.IsLeader() {
				return 1
			}
			return 0
		}),
		gauge("backplane_stream_readers", "Open native cursor-stream readers.", func() float64 {
			total := 0
			for _, c := range n.streams.Counts() {
				total += c
			}
			return float64(total)
		}),
		slowClientsCut(n),
		signalrConnections(n),
		signalr2Connections(n),
		parkedWebSockets(n),
		parkedSSE(n),
		gauge("backplane_raft_term", "Current Raft term.", func() float64 { return float64(n.raft.Status().Term) }),
		gauge("backplane_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.raft.Status().CommitIndex) }),
		gauge("backplane_raft_applied_index", "Last Raft index applied to the store.", func() float64 { return float64(n.fsm.AppliedIndex()) }),
		gauge("backplane_message_last_index", "Highest message index.", func() float64 { return float64(n.fsm.LastMessage()) }),
		gauge("backplane_message_first_index", "Oldest retained message index.", func() float64 { return float64(n.fsm.FirstMessage()) }),
		// From counters the state machine keeps: a scrape reads no store.
		gauge("backplane_retained_messages", "Messages retained in the store.", func() float64 { return float64(n.fsm.RetainedMessages()) }),
		gauge("backplane_retained_bytes", "Bytes of message records retained in the store.", func() float64 { return float64(n.fsm.RetainedBytes()) }),
	)
	return m
}

// slowClientsCut counts, per transport, the clients cut because they did
// not take their messages within the write timeout.
func slowClientsCut(n *Node) prometheus.Collector {
	return &labeledValues{
		desc: prometheus.NewDesc("backplane_slow_clients_cut_total",
			"Clients disconnected because they did not take their messages within the write timeout, by transport.", []string{"transport"}, nil),
		kind: prometheus.CounterValue,
		read: func() map[string]float64 {
			out := map[string]float64{"signalr": float64(n.hubs.SlowClientsCut())}
			for transport, v := range n.streams.SlowClientsCut() {
				out[transport] = float64(v)
			}
			return out
		},
	}
}

// signalrConnections counts this node's SignalR connections by transport
// ("negotiated": not bound to a transport yet).
func signalrConnections(n *Node) prometheus.Collector {
	return connectionsByTransport("backplane_signalr_connections",
		"SignalR connections this node holds, by transport.", "signalr_",
		func() map[string]int { return n.hubs.Counts() }) // read at scrape time: hubs is made after the metrics
}

// signalr2Connections counts the SignalR 2 connections this node serves,
// by transport.
func signalr2Connections(n *Node) prometheus.Collector {
	counts := func() map[string]int { // read at scrape time: the endpoint is made after the metrics
		if n.signalr2 == nil {
			return nil
		}
		return n.signalr2.Counts()
	}
	return connectionsByTransport("backplane_signalr2_connections",
		"SignalR 2 transport requests this node serves: open WebSockets and SSE streams, waiting long polls, by transport.", "signalr2_", counts)
}

// connectionsByTransport is a gauge labelled by transport over an
// endpoint's Counts, whose keys carry the endpoint's prefix.
func connectionsByTransport(name, help, prefix string, counts func() map[string]int) prometheus.Collector {
	return &labeledValues{
		desc: prometheus.NewDesc(name, help, []string{"transport"}, nil),
		kind: prometheus.GaugeValue,
		read: func() map[string]float64 {
			out := map[string]float64{}
			for key, v := range counts() {
				out[strings.TrimPrefix(key, prefix)] = float64(v)
			}
			return out
		},
	}
}

// parkedWebSockets counts the WebSockets whose reader is parked (idle,
// no goroutine), by endpoint: SignalR and SignalR 2 connections, native
// streams.
func parkedWebSockets(n *Node) prometheus.Collector {
	return &labeledValues{
		desc: prometheus.NewDesc("backplane_websockets_parked",
			"WebSockets whose reader is parked: idle, holding no reader goroutine, by endpoint.", []string{"endpoint"}, nil),
		kind: prometheus.GaugeValue,
		read: func() map[string]float64 {
			out := map[string]float64{"signalr": float64(n.hubs.ParkedReaders()), "stream": float64(n.streams.ParkedReaders())}
			if n.signalr2 != nil {
				out["signalr2"] = float64(n.signalr2.ParkedReaders())
			}
			return out
		},
	}
}

// parkedSSE counts the SSE streams over HTTP/1.x whose reader is parked,
// by endpoint: SignalR and SignalR 2 connections, native streams.
func parkedSSE(n *Node) prometheus.Collector {
	return &labeledValues{
		desc: prometheus.NewDesc("backplane_sse_parked",
			"SSE streams (over HTTP/1.x) whose reader is parked: idle, holding no goroutine, by endpoint.", []string{"endpoint"}, nil),
		kind: prometheus.GaugeValue,
		read: func() map[string]float64 {
			out := map[string]float64{"signalr": float64(n.hubs.ParkedSSE()), "stream": float64(n.streams.ParkedSSE())}
			if n.signalr2 != nil {
				out["signalr2"] = float64(n.signalr2.ParkedSSE())
			}
			return out
		},
	}
}

// labeledValues exposes values read at scrape time, one per value of its
// single label.
type labeledValues struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func() map[string]float64
}

func (l *labeledValues) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *labeledValues) Collect(ch chan<- prometheus.Metric) {
	for label, v := range l.read() {
		ch <- prometheus.MustNewConstMetric(l.desc, l.kind, v, label)
	}
}

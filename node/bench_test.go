package node

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkRESTPublish: REST publishes (POST /api/v1/hubs/{hub}, answered
// 202 once committed) to a one-node cluster with real Raft and bbolt files,
// from 8 × GOMAXPROCS clients in parallel, each with its own kept-alive
// connection. ns/op is the wall time per committed publish; the client
// runs in the same process, so read a CPU profile (-cpuprofile) for what
// the node spends per publish (the handler chain, the proposer, Raft, the
// store).
func BenchmarkRESTPublish(b *testing.B) {
	c := startCluster(b, clusterOptions{size: 1})
	url := c.waitLeader().url("/api/v1/hubs/bench")
	body := fmt.Appendf(nil, `{"target":"tick","arguments":[%q]}`, strings.Repeat("x", 190))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("publish: status %d", resp.StatusCode)
				return
			}
		}
	})
}

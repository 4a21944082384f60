package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// clientHTTP is the client of the publisher and of the test's own calls
// over the network (the bridge, or loopback). Its timeouts are well above
// the nodes' -write-timeout (3 s), so a node answers before the client
// gives up, unless it cannot be reached.
var clientHTTP = &http.Client{
	Timeout: 6 * time.Second,
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
}

// streamHTTP is the readers' client: no overall timeout, one connection
// per stream.
var streamHTTP = &http.Client{
	Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		ResponseHeaderTimeout: 10 * time.Second,
		DisableKeepAlives:     true,
	},
}

// clusterOptions configures newCluster.
type clusterOptions struct {
	// netns puts every node in its own network namespace (root only; the
	// test is skipped loudly otherwise) so that partitions can be made.
	netns bool
	// extra flags for every node.
	extra []string
	// beforeStart runs before a node's first start, with its data
	// directory known (e.g. to mount a tmpfs under it).
	beforeStart func(n *node)
}

// cluster is a set of nodes n1..nN: n1 bootstraps, the others join it.
type cluster struct {
	t     *testing.T
	nodes []*node
	lab   *netLab
}

// newCluster starts size nodes and waits until they agree on members and
// a leader and are ready. Every process is stopped, and its output printed
// on failure, when the test ends.
func newCluster(t *testing.T, size int, o clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t}
	if o.netns {
		c.lab = newNetLab(t, size)
	}
	base := t.TempDir()
	for i := range size {
		n := &node{t: t, id: "n" + strconv.Itoa(i+1), host: "127.0.0.1", logs: &testkit.Buffer{}, ctl: clientHTTP,
			extra: o.extra}
		n.dataDir = filepath.Join(base, n.id)
		if c.lab != nil {
			n.place = c.lab.places[i]
			n.host = n.place.ip
			n.ctl = n.place.client
		}
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() {
			n.stop()
			if t.Failed() {
				t.Logf("---- output of %s ----\n%s", n.id, tail(n.logs.String(), 256<<10))
			}
		})
	}
	for i, n := range c.nodes {
		if o.beforeStart != nil {
			o.beforeStart(n)
		}
		if i > 0 {
			n.join = []string{c.nodes[0].httpAddr}
		}
		n.start()
		if i == 0 {
			testkit.WaitFor(t, 20*time.Second, "n1 to be ready", func() (bool, string) { return ready(n) })
		}
	}
	c.waitHealthy(60 * time.Second)
	return c
}

// get sends one request through client and reads the whole answer.
func get(client *http.Client, method, url string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, b, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp.StatusCode, resp.Header, b, nil
}

// adminHeader carries the admin token.
func adminHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + adminToken}}
}

// nodeStatus is what the suite reads of GET /admin/status.
type nodeStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Term   uint64 `json:"term"`
	Leader struct {
		ID string `json:"id"`
	} `json:"leader"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID string `json:"id"`
	} `json:"members"`
	Messages struct {
		LastMessage uint64 `json:"last_message"`
	} `json:"messages"`
}

// status reads n's /admin/status through its control client, which
// reaches it even while it is cut off.
func status(n *node) (nodeStatus, error) {
	var st nodeStatus
	code, _, body, err := get(n.ctl, http.MethodGet, n.url("/admin/status"), nil, adminHeader())
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("%s /admin/status: %d %s", n.id, code, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s /admin/status: %w in %s", n.id, err, body)
	}
	return st, nil
}

// ready reports whether n's /readyz answers 200 (through its control
// client).
func ready(n *node) (bool, string) {
	code, _, body, err := get(n.ctl, http.MethodGet, n.url("/readyz"), nil, nil)
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, fmt.Sprintf("%s: %d %s", n.id, code, bytes.TrimSpace(body))
}

// running is the nodes whose process is alive.
func (c *cluster) running() []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}

// startUntilHealthy starts n and waits until the whole cluster is healthy
// (waitHealthy, within 60 s); it returns how long that took.
func (c *cluster) startUntilHealthy(n *node) time.Duration {
	c.t.Helper()
	t0 := time.Now()
	n.start()
	c.waitHealthy(60 * time.Second)
	return time.Since(t0)
}

// waitHealthy waits until every node is running, lists exactly the
// cluster's nodes as members, agrees on one leader, and is ready; then it
// marks them all up and returns the leader.
func (c *cluster) waitHealthy(timeout time.Duration) *node {
	c.t.Helper()
	want := make([]string, 0, len(c.nodes))
	for _, n := range c.nodes {
		want = append(want, n.id)
	}
	var leader *node
	testkit.WaitFor(c.t, timeout, fmt.Sprintf("%v to agree on members and a leader and be ready", want), func() (bool, string) {
		l, why := c.agreedLeader(c.nodes, want)
		if l == nil {
			return false, why
		}
		for _, n := range c.nodes {
			if ok, why := ready(n); !ok {
				return false, why
			}
		}
		leader = l
		return true, ""
	})
	for _, n := range c.nodes {
		n.markUp()
	}
	return leader
}

// agreedLeader returns the leader that every node of among names, if they
// all name the same one and, when members is not nil, list exactly those
// members; otherwise nil and why.
func (c *cluster) agreedLeader(among []*node, members []string) (*node, string) {
	leaderID := ""
	for _, n := range among {
		if !n.running() {
			return nil, n.id + " is not running"
		}
		st, err := status(n)
		if err != nil {
			return nil, err.Error()
		}
		if members != nil {
			var got []string
			for _, m := range st.Members {
				got = append(got, m.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, members) {
				return nil, fmt.Sprintf("%s: members %v, want %v", n.id, got, members)
			}
		}
		switch {
		case st.Leader.ID == "":
			return nil, n.id + ": no leader"
		case leaderID == "":
			leaderID = st.Leader.ID
		case st.Leader.ID != leaderID:
			return nil, fmt.Sprintf("%s names leader %s, another node %s", n.id, st.Leader.ID, leaderID)
		}
	}
	for _, n := range c.nodes {
		if n.id == leaderID {
			return n, ""
		}
	}
	return nil, fmt.Sprintf("leader %q is not a node of the cluster", leaderID)
}

// leader waits for the running nodes to agree on a leader and returns it.
func (c *cluster) leader(timeout time.Duration) *node {
	c.t.Helper()
	var leader *node
	testkit.WaitFor(c.t, timeout, "the running nodes to agree on a leader", func() (bool, string) {
		l, why := c.agreedLeader(c.running(), nil)
		leader = l
		return l != nil, why
	})
	return leader
}

// followers is the nodes other than leader.
func (c *cluster) followers(leader *node) []*node {
	var out []*node
	for _, n := range c.nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// waitNewLeader waits until every node of among names a leader other than
// old, and returns it with how long that took from since.
func (c *cluster) waitNewLeader(among []*node, old *node, since time.Time, timeout time.Duration) (*node, time.Duration) {
	c.t.Helper()
	var leader *node
	testkit.WaitFor(c.t, timeout, fmt.Sprintf("%v to elect a leader other than %s", among, old), func() (bool, string) {
		l, why := c.agreedLeader(among, nil)
		if l == nil {
			return false, why
		}
		if l == old {
			return false, "still " + old.id
		}
		leader = l
		return true, ""
	})
	return leader, time.Since(since)
}

// httpAddrs is the HTTP addresses of nodes (for -join).
func httpAddrs(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.httpAddr)
	}
	return out
}

// names is the ids of nodes, for messages.
func names(nodes []*node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.id)
	}
	return strings.Join(out, ",")
}

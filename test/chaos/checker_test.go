package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/internal/testkit"
)

// run is one scenario's load: the publisher and a reader per node.
type run struct {
	c       *cluster
	hub     string
	pub     *publisher
	readers []*reader
	started time.Time
}

// startLoad starts a paced publisher and one reader per node on hub.
func startLoad(c *cluster, hub string, rate, padBytes int) *run {
	r := &run{c: c, hub: hub, pub: newPublisher(c, hub, rate, padBytes), started: time.Now()}
	r.readers = startReaders(c, hub)
	r.pub.start()
	c.t.Cleanup(r.pub.abort)
	return r
}

// waitAcks waits until more payloads than now+n are acknowledged: the
// cluster takes writes.
func (r *run) waitAcks(n int, timeout time.Duration, why string) {
	r.c.t.Helper()
	want := r.pub.ackCount() + n
	testkit.WaitFor(r.c.t, timeout, fmt.Sprintf("%d more acknowledged publishes (%s)", n, why), func() (bool, string) {
		got := r.pub.ackCount()
		return got >= want, fmt.Sprintf("%d acknowledged, want %d", got, want)
	})
}

// runFor lasts d, and fails unless publishes are acknowledged meanwhile
// at half the publisher's rate or more.
func (r *run) runFor(d time.Duration, why string) {
	r.c.t.Helper()
	if d <= 0 {
		return
	}
	start, want := time.Now(), r.pub.ackCount()+int(d.Seconds()*float64(r.pub.rate)/2)
	testkit.WaitFor(r.c.t, d+30*time.Second, fmt.Sprintf("%s of acknowledged publishes (%s)", d, why), func() (bool, string) {
		got := r.pub.ackCount()
		return time.Since(start) >= d && got >= want, fmt.Sprintf("%d acknowledged, want %d", got, want)
	})
}

// finish stops the publisher, waits until the cluster is healthy and every
// reader has received everything, reads every node's whole log with
// after=0, and checks it all (check). It returns the number of
// acknowledged payloads.
func (r *run) finish() int {
	t := r.c.t
	t.Helper()
	r.pub.halt()
	r.c.waitHealthy(60 * time.Second)
	var last uint64
	testkit.WaitFor(t, 30*time.Second, "every node to apply the same last message", func() (bool, string) {
		var seen []string
		last = 0
		same := true
		for i, n := range r.c.nodes {
			st, err := status(n)
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s:%d", n.id, st.Messages.LastMessage))
			if i > 0 && st.Messages.LastMessage != last {
				same = false
			}
			last = max(last, st.Messages.LastMessage)
		}
		return same, strings.Join(seen, " ")
	})
	if m := r.pub.maxIndex(); last < m {
		t.Errorf("every node's last message is %d, below the highest acknowledged index %d", last, m)
	}
	testkit.WaitFor(t, 30*time.Second, "every reader to reach the last message", func() (bool, string) {
		for _, rd := range r.readers {
			if got := rd.last(); got < last {
				return false, fmt.Sprintf("%s at %d, want %d", rd, got, last)
			}
		}
		return true, ""
	})
	for _, rd := range r.readers {
		rd.halt()
	}
	logs := map[string][]message{}
	for _, n := range r.c.nodes {
		msgs, err := readLog(n, r.hub)
		if err != nil {
			t.Fatalf("read the whole log of %s: %v", n, err)
		}
		logs[n.id] = msgs
	}
	check(t, r.pub, r.readers, r.c.nodes, logs)
	return r.pub.ackCount()
}

// readLog pages through n's long-poll endpoint from after=0 (timeout=0)
// until it has nothing more: the node's whole log of the hub.
func readLog(n *node, hub string) ([]message, error) {
	var all []message
	var after uint64
	for {
		url := n.url("/v1/hubs/" + hub + "/poll?timeout=0&limit=1000&after=" + strconv.FormatUint(after, 10))
		code, _, body, err := get(clientHTTP, http.MethodGet, url, nil, nil)
		if err != nil {
			return all, err
		}
		if code != http.StatusOK {
			return all, fmt.Errorf("poll after %d: %d %s", after, code, bytes.TrimSpace(body))
		}
		var page struct {
			Messages []json.RawMessage `json:"messages"`
			Next     uint64            `json:"next"`
			Reset    json.RawMessage   `json:"reset"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return all, fmt.Errorf("poll after %d: %w in %s", after, err, body)
		}
		if page.Reset != nil {
			return all, fmt.Errorf("poll after %d: unexpected reset %s", after, page.Reset)
		}
		if len(page.Messages) == 0 {
			return all, nil
		}
		for _, raw := range page.Messages {
			m, err := parseMessage(raw)
			if err != nil {
				return all, err
			}
			all = append(all, m)
		}
		if page.Next <= after {
			return all, fmt.Errorf("poll after %d: next %d does not advance", after, page.Next)
		}
		after = page.Next
	}
}

// check is the verdict:
//   - the publisher saw no protocol violation and every payload was
//     acknowledged within its retry deadline;
//   - every sequence (each reader's, each node's whole log) is dense from
//     index 1 in increasing order (message indexes are dense and this hub
//     is the only one written), holds each payload at most once and only
//     payloads the publisher sent, and every acknowledged payload exactly
//     once at the index its acknowledgement named;
//   - every node's log is the same, message for message, and every reader
//     received exactly that log.
func check(t *testing.T, pub *publisher, readers []*reader, nodes []*node, logs map[string][]message) {
	t.Helper()
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, e := range pub.errs {
		t.Errorf("publisher: %s", e)
	}
	for _, f := range pub.failed {
		t.Errorf("publisher: never acknowledged within %s of retries: %s", pub.retryFor, f)
	}
	if len(pub.acked) == 0 {
		t.Errorf("publisher: nothing was acknowledged")
	}
	checkSeq := func(name string, msgs []message) {
		t.Helper()
		seen := map[string]uint64{}
		bad := 0
		report := func(format string, args ...any) {
			t.Helper()
			if bad++; bad <= 10 {
				t.Errorf(name+": "+format, args...)
			}
		}
		for i, m := range msgs {
			if m.Index != uint64(i+1) {
				report("position %d holds index %d, want %d (a gap, a duplicate or a reordering)", i, m.Index, i+1)
			}
			if !pub.sent[m.id] {
				report("index %d holds %q, which the publisher never sent", m.Index, m.id)
			}
			if at, dup := seen[m.id]; dup {
				report("payload %s at index %d and again at %d", m.id, at, m.Index)
			}
			seen[m.id] = m.Index
		}
		for id, want := range pub.acked {
			switch at, ok := seen[id]; {
			case !ok:
				report("acknowledged payload %s (index %d) is missing", id, want)
			case at != want:
				report("acknowledged payload %s is at index %d, its acknowledgement said %d", id, at, want)
			}
		}
		if bad > 10 {
			t.Errorf("%s: %d problems in all", name, bad)
		}
	}
	ref := nodes[0].id
	for _, n := range nodes {
		checkSeq("log of "+n.id, logs[n.id])
		if d := diff(logs[n.id], logs[ref]); d != "" {
			t.Errorf("the logs of %s and %s differ: %s", n.id, ref, d)
		}
	}
	for _, r := range readers {
		r.mu.Lock()
		for _, e := range r.errs {
			t.Errorf("%s: %s", r, e)
		}
		checkSeq(r.String(), r.msgs)
		if d := diff(r.msgs, logs[ref]); d != "" {
			t.Errorf("%s received other than the log of %s: %s", r, ref, d)
		}
		r.mu.Unlock()
	}
}

// diff describes the first difference between two sequences, or "".
func diff(a, b []message) string {
	for i := range min(len(a), len(b)) {
		if a[i].Index != b[i].Index || a[i].id != b[i].id || !bytes.Equal(a[i].Arguments, b[i].Arguments) {
			return fmt.Sprintf("at position %d: #%d %s against #%d %s", i, a[i].Index, a[i].id, b[i].Index, b[i].id)
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d messages against %d", len(a), len(b))
	}
	return ""
}

// figures logs what a run measured, for the docs.
func (r *run) figures(extra string) {
	r.c.t.Helper()
	var resumes []string
	for _, rd := range r.readers {
		rd.mu.Lock()
		resumes = append(resumes, fmt.Sprintf("%s resumed %d times, served by %v", rd, rd.resumes, rd.servedBy))
		rd.mu.Unlock()
	}
	verdict := "checked: nothing lost, duplicated, moved or reordered, no node diverged"
	if r.c.t.Failed() {
		verdict = "the check FAILED (see the errors above)"
	}
	r.c.t.Logf("FIGURES %s: %d acknowledged in %s (%d requests, %d retries, at most %d payloads pending, %d ticks skipped at %d); %s; %s; %s",
		r.c.t.Name(), r.pub.ackCount(), time.Since(r.started).Round(time.Second), r.pub.attempts.Load(), r.pub.retries.Load(),
		r.pub.peak.Load(), r.pub.skipped.Load(), maxInFlight, verdict, extra, strings.Join(resumes, "; "))
}

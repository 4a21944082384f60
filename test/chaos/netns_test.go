package chaos

// Partitions with network namespaces. A TCP proxy in front of each Raft
// port cannot isolate a leader: its outbound AppendEntries would still reach
// the followers through their proxies. So each node runs in a network
// namespace of its own, attached by a veth pair to a bridge in the test's
// namespace, on a private /24 chosen per run. Cutting a node is
// `ip link set <its veth> down`; healing is `up`. The test process reaches
// the nodes over the bridge like any client (the publisher, the readers),
// and also through a control client that dials from inside a node's
// namespace (setns on a locked thread), so it can watch a node that is cut
// off — e.g. an isolated leader stepping down.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ipPath is the iproute2 binary, found by newNetLab.
var ipPath = "ip"

// netLab is one test's namespaces, veths and bridge.
type netLab struct {
	t      *testing.T
	bridge string
	places []*netPlace
}

// netPlace is one node's namespace.
type netPlace struct {
	ns     string // namespace name (/run/netns/<ns>)
	veth   string // the veth end on the bridge, in the test's namespace
	ip     string // the node's address inside ns
	client *http.Client
}

// newNetLab makes size namespaces on a new bridge, or skips the test
// loudly when it cannot (not root, no ip). Everything is removed when the
// test ends, failed or not.
func newNetLab(t *testing.T, size int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED (chaos partitions): network namespaces need root; run the suite as root (CI does) to test partitions")
	}
	path, err := exec.LookPath("ip")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/ip"); statErr != nil {
			t.Skipf("SKIPPED (chaos partitions): iproute2's ip is not installed (%v); apt-get install iproute2", err)
		}
		path = "/usr/sbin/ip"
	}
	ipPath = path
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := hex.EncodeToString(b)[:5]
	subnet := freeSubnet(t)
	l := &netLab{t: t, bridge: "bc" + tok + "br"}
	// Root without the capability (an unprivileged container) cannot make
	// links or namespaces: skip loudly on the first of each.
	if out, err := exec.Command(ipPath, "link", "add", l.bridge, "type", "bridge").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED (chaos partitions): cannot create a bridge (ip link add: %v: %s); the partitions need CAP_NET_ADMIN", err, out)
	}
	t.Cleanup(l.remove)
	l.ip("addr", "add", subnet+".1/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	for i := range size {
		p := &netPlace{
			ns:   fmt.Sprintf("bpchaos-%s-%d", tok, i+1),
			veth: fmt.Sprintf("bc%sh%d", tok, i+1),
			ip:   fmt.Sprintf("%s.%d", subnet, 11+i),
		}
		inner := fmt.Sprintf("bc%sn%d", tok, i+1)
		if out, err := exec.Command(ipPath, "netns", "add", p.ns).CombinedOutput(); err != nil {
			if i == 0 {
				t.Skipf("SKIPPED (chaos partitions): cannot create a network namespace (ip netns add: %v: %s); the partitions need CAP_SYS_ADMIN", err, out)
			}
			t.Fatalf("ip netns add %s: %v: %s", p.ns, err, out)
		}
		l.places = append(l.places, p) // from now on removed at the end
		l.ip("link", "add", p.veth, "type", "veth", "peer", "name", inner)
		l.ip("link", "set", inner, "netns", p.ns)
		l.ip("link", "set", p.veth, "master", l.bridge)
		l.ip("link", "set", p.veth, "up")
		l.ip("-n", p.ns, "link", "set", "lo", "up")
		l.ip("-n", p.ns, "addr", "add", p.ip+"/24", "dev", inner)
		l.ip("-n", p.ns, "link", "set", inner, "up")
		p.client = &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DialContext: dialInNamespace("/run/netns/" + p.ns), MaxIdleConnsPerHost: 4},
		}
	}
	return l
}

// ip runs one ip command and fails the test if it fails.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(ipPath, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (and with them the veths) and the bridge.
// It runs after the nodes' cleanups, which registered later.
func (l *netLab) remove() {
	for _, p := range l.places {
		if p.client != nil {
			p.client.CloseIdleConnections()
		}
		if out, err := exec.Command(ipPath, "netns", "del", p.ns).CombinedOutput(); err != nil {
			l.t.Errorf("clean up: ip netns del %s: %v: %s", p.ns, err, out)
		}
		_ = exec.Command(ipPath, "link", "del", p.veth).Run() // gone with the namespace, normally
	}
	if out, err := exec.Command(ipPath, "link", "del", l.bridge).CombinedOutput(); err != nil {
		l.t.Errorf("clean up: ip link del %s: %v: %s", l.bridge, err, out)
	}
}

// cut isolates a node: its veth goes down, so it reaches no one and no one
// reaches it, except through its control client.
func (l *netLab) cut(n *node) {
	l.t.Helper()
	n.markDown()
	l.ip("link", "set", n.place.veth, "down")
	fmt.Fprintf(n.logs, "==== %s: cut off the network by the test\n", stamp())
}

// heal brings a cut node's veth back up.
func (l *netLab) heal(n *node) {
	l.t.Helper()
	l.ip("link", "set", n.place.veth, "up")
	fmt.Fprintf(n.logs, "==== %s: network healed by the test\n", stamp())
}

// freeSubnet picks a random 10.x.y.0/24 that no interface or route of the
// test's namespace uses (the first three octets).
func freeSubnet(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(ipPath, "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	used := string(out)
	for range 100 {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		subnet := "10." + strconv.Itoa(64+int(b[0])%190) + "." + strconv.Itoa(int(b[1]))
		if !strings.Contains(used, subnet+".") {
			return subnet
		}
	}
	t.Fatal("no free 10.x.y.0/24 found for the namespaces")
	return ""
}

// dialInNamespace dials from inside the network namespace at nsPath: a
// goroutine locks its thread, enters the namespace, creates and connects
// the socket (a socket belongs to the namespace it was created in), and
// returns the thread to the test's namespace. A thread that cannot return
// stays locked and ends with its goroutine.
func dialInNamespace(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid())
			orig, err := os.Open(self)
			if err != nil {
				runtime.UnlockOSThread()
				done <- result{err: fmt.Errorf("open %s: %w", self, err)}
				return
			}
			defer orig.Close()
			target, err := os.Open(nsPath)
			if err != nil {
				runtime.UnlockOSThread()
				done <- result{err: fmt.Errorf("open %s: %w", nsPath, err)}
				return
			}
			defer target.Close()
			if err := setns(target.Fd()); err != nil {
				runtime.UnlockOSThread()
				done <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
				return
			}
			d := net.Dialer{Timeout: 2 * time.Second}
			conn, err := d.DialContext(ctx, network, addr)
			if back := setns(orig.Fd()); back != nil {
				done <- result{conn, err} // the thread stays locked and exits with this goroutine
				return
			}
			runtime.UnlockOSThread()
			done <- result{conn, err}
		}()
		r := <-done
		return r.conn, r.err
	}
}

// setns moves the calling thread into the network namespace fd refers to.
func setns(fd uintptr) error {
	return unix.Setns(int(fd), unix.CLONE_NEWNET)
}

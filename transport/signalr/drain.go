package signalr

import (
	"errors"
	"net"
	"net/http"
	"os"
	"time"
)

// drainingHeader marks a holder's answer to a relayed resume while it
// drains: the member that relayed it takes the connection over instead.
const drainingHeader = "Backplane-Holder-Draining"

// Drain prepares this node's departure without an error to stateful
// clients: it replicates their acknowledged positions, then drops their
// sockets without a Close. Each client resumes as after a network cut;
// the member it resumes on takes the connection over from the log (a
// resume relayed here is answered with drainingHeader, so the relaying
// member adopts at once), and this node will not close those connections
// in the cluster when it stops. Connections without stateful reconnect are
// closed by Stop with allowReconnect, as before.
func (s *Server) Drain() {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	s.ackAndCheckpoint()
	var handed []*conn
	for _, c := range s.heldConns() {
		if c.mb == nil {
			continue
		}
		c.moveAway()
		c.mu.Lock()
		sock := c.sock
		c.mu.Unlock()
		if sock != nil && sock.ws != nil {
			_ = sock.ws.NetConn().Close()
		}
		handed = append(handed, c)
	}
	if len(handed) == 0 {
		return
	}
	s.log.Info("draining: stateful connections will resume on other nodes", "count", len(handed))
	// Stay until they are taken over (bounded): a node that stopped, and
	// above all one restarted at once, would otherwise leave the relayed
	// resumes nobody to answer them, or expire the connections as its
	// earlier run's.
	deadline := time.Now().Add(handOverWait)
	for _, c := range handed {
		for time.Now().Before(deadline) {
			holder, open, err := s.cluster.ConnectionHolder(c.hub, c.id)
			if err != nil || !open || holder != s.cluster.NodeID() {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if time.Now().After(deadline) {
		s.log.Warn("draining: not every stateful connection was taken over in time; the rest resume after this node stops", "wait", handOverWait)
	}
}

// handOverWait bounds how long Drain waits for the stateful connections
// it handed over to be taken over elsewhere: a client resumes at once, so
// this is a few round trips and a commit unless it is gone.
const handOverWait = 5 * time.Second

// refuseWhileDraining answers a resume that reached this node while it
// drains and reports whether it did: a relayed one tells the relaying
// member to take the connection over; a direct one is told to retry (a
// balancer that checks /readyz sends the retry elsewhere).
func (s *Server) refuseWhileDraining(w http.ResponseWriter, r *http.Request) bool {
	if !s.draining.Load() {
		return false
	}
	if s.relayed(r) {
		w.Header().Set(drainingHeader, "1")
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "this node is draining: resume on another node", http.StatusServiceUnavailable)
	return true
}

// slowClientCut counts and logs, once per connection, a client cut because
// it did not take its messages in time.
func (s *Server) slowClientCut(c *conn, how string) {
	s.slowCuts.Add(1)
	s.log.Warn("slow client cut: it did not take its messages in time", "conn", c.id, "hub", c.hub, "how", how,
		"write_deadline", s.opts.WriteDeadline)
}

// isTimeout reports whether err is a write deadline passing (gorilla hides
// it behind its own net.Error).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

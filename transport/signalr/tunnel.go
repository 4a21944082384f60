package signalr

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/backplane/backplane/transport/netconn"
)

// A WebSocket that reaches a node other than its holder (a load balancer
// without affinity) is relayed through a plain TCP tunnel rather than
// httputil.ReverseProxy. The proxy keeps, for every relayed socket, its
// handler goroutine with net/http's buffers, two copy goroutines with
// 32 KiB buffers and the outgoing connection's own goroutines: about
// 100 KiB and four more goroutines per idle connection. The tunnel forwards the
// upgrade request, relays the holder's answer, and then keeps two
// goroutines that wait for data from a shallow frame and borrow a buffer
// only while they copy.

// tunnelBuffers are the buffers tunnels copy through while data flows.
var tunnelBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// tunnelWebSocket relays a WebSocket upgrade to the holder at base. When
// the holder cannot be dialled and unreachable is set, it serves the
// request instead (a stateful connection resumes here).
func (s *Server) tunnelWebSocket(w http.ResponseWriter, r *http.Request, base *url.URL, holder string, unreachable http.HandlerFunc) {
	back, err := s.peers.DialHTTP(r.Context(), base.Host)
	if err != nil {
		s.log.Debug("tunnel to holder failed", "holder", holder, "err", err)
		if unreachable != nil {
			unreachable(w, r)
			return
		}
		http.Error(w, "No Connection with that ID (its node is unreachable)", http.StatusNotFound)
		return
	}
	resp, backBuf, err := s.tunnelHandshake(back, r)
	if err != nil {
		_ = back.Close()
		s.log.Debug("tunnel handshake with holder failed", "holder", holder, "err", err)
		http.Error(w, "No Connection with that ID (its node did not answer)", http.StatusBadGateway)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Header.Get(drainingHeader) != "" && unreachable != nil {
		// The holder is leaving: take the connection over here.
		_ = resp.Body.Close()
		_ = back.Close()
		unreachable(w, r)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The holder refused (an unknown connection, a bad token…): its
		// answer is the client's.
		defer back.Close()
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	client, clientBuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = back.Close()
		return
	}
	if err := relaySwitch(client, clientBuf, back, backBuf, resp); err != nil {
		_ = client.Close()
		_ = back.Close()
		return
	}
	go pipe(back, client)
	go pipe(client, back)
}

// tunnelHandshake sends the upgrade request to the holder and reads its
// answer, within 10 s.
func (s *Server) tunnelHandshake(back net.Conn, r *http.Request) (*http.Response, *bufio.Reader, error) {
	out := r.Clone(r.Context())
	out.URL = &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.RequestURI = ""
	out.Header.Set(forwardedHeader, s.cluster.NodeID())
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		out.Header.Set("X-Forwarded-For", strings.Join(append(r.Header.Values("X-Forwarded-For"), ip), ", "))
	}
	s.peers.Sign(out, nil)
	_ = back.SetDeadline(time.Now().Add(10 * time.Second))
	if err := out.Write(back); err != nil {
		return nil, nil, fmt.Errorf("send the upgrade: %w", err)
	}
	br := bufio.NewReaderSize(back, 1024)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer: %w", err)
	}
	_ = back.SetDeadline(time.Time{})
	return resp, br, nil
}

// relaySwitch writes the holder's 101 answer to the client and passes on
// the bytes either side sent early (still in the buffers that read them).
func relaySwitch(client net.Conn, clientBuf *bufio.ReadWriter, back net.Conn, backBuf *bufio.Reader, resp *http.Response) error {
	head := fmt.Sprintf("HTTP/1.1 %s\r\n", resp.Status)
	var hdr strings.Builder
	if err := resp.Header.Write(&hdr); err != nil {
		return err
	}
	if _, err := io.WriteString(client, head+hdr.String()+"\r\n"); err != nil {
		return err
	}
	if err := flushBuffered(back, clientBuf.Reader); err != nil {
		return err
	}
	return flushBuffered(client, backBuf)
}

func flushBuffered(dst io.Writer, br *bufio.Reader) error {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, err := br.Peek(n)
	if err != nil {
		return err
	}
	_, err = dst.Write(b)
	return err
}

// pipe copies src to dst until either fails, then closes both. It waits
// for data without holding a buffer where the connection allows it.
func pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	readable := netconn.NewReadWaiter(src)
	for {
		readable.Wait()
		bp := tunnelBuffers.Get().(*[]byte)
		n, err := src.Read(*bp)
		if n > 0 {
			if _, werr := dst.Write((*bp)[:n]); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		tunnelBuffers.Put(bp)
		if err != nil {
			return
		}
	}
}

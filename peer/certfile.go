package peer

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// reloadInterval is how often, at most, the files behind a reloader are
// checked for a change.
const reloadInterval = time.Second

// fileStamp identifies a version of a file well enough to notice a rewrite.
type fileStamp struct {
	mod  time.Time
	size int64
}

// reloader holds a value loaded from files and loads it again, on use and
// at most once per interval, when one of the files' modification time or
// size has changed. A failed reload keeps the previous good value and logs
// a warning, so a half-written rotation never takes the node down; the
// next change of either file tries again.
type reloader[T any] struct {
	what     string // names the flags, for logs
	files    []string
	load     func() (T, error)
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	cur    T
	stamps []fileStamp
	next   time.Time // no check before this
}

// newReloader loads the value once; that first load must succeed.
func newReloader[T any](what string, log *slog.Logger, load func() (T, error), files ...string) (*reloader[T], error) {
	r := &reloader[T]{what: what, files: files, load: load, log: log, interval: reloadInterval, now: time.Now}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	v, err := load()
	if err != nil {
		return nil, err
	}
	r.cur, r.stamps, r.next = v, stamps, r.now().Add(r.interval)
	return r, nil
}

func (r *reloader[T]) stat() ([]fileStamp, error) {
	stamps := make([]fileStamp, len(r.files))
	for i, f := range r.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err // names the file
		}
		stamps[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return stamps, nil
}

// get returns the current value, reloading it first when it is time to
// check and the files have changed.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Before(r.next) {
		return r.cur
	}
	r.next = now.Add(r.interval)
	stamps, err := r.stat()
	if err != nil {
		r.log.Warn("cannot check certificate files; keeping the loaded ones", "files", r.what, "error", err)
		return r.cur
	}
	if equalStamps(stamps, r.stamps) {
		return r.cur
	}
	// Remember the stamps even when the load fails: a rotation that is
	// still being written changes them again and is retried then.
	r.stamps = stamps
	v, err := r.load()
	if err != nil {
		r.log.Warn("reloading certificate files failed; keeping the previous ones", "files", r.what, "error", err)
		return r.cur
	}
	r.cur = v
	r.log.Info("reloaded certificate files", "files", r.what)
	return r.cur
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// keyPair is a loaded certificate and key. roots, only filled for the
// client certificate, is the system pool plus the certificates of the
// file: what a member trusts when it dials another member's HTTPS port that
// serves only the client certificate (possibly self-signed).
type keyPair struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

// loadKeyPair reads a PEM certificate (chain) and its key. withRoots also
// builds the roots described on keyPair.
func loadKeyPair(certFile, keyFile string, withRoots bool) func() (*keyPair, error) {
	return func() (*keyPair, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
		}
		kp := &keyPair{cert: &cert}
		if !withRoots {
			return kp, nil
		}
		kp.roots, err = x509.SystemCertPool()
		if err != nil || kp.roots == nil {
			kp.roots = x509.NewCertPool()
		}
		for _, der := range cert.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("parse certificate in %s: %w", certFile, err)
			}
			kp.roots.AddCert(c)
		}
		return kp, nil
	}
}

// caBundle is a loaded CA file: the pool for verification and the parsed
// certificates (kept to check the node's own certificate at start).
type caBundle struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// loadCA reads a PEM file of one or more CA certificates.
func loadCA(file string) func() (*caBundle, error) {
	return func() (*caBundle, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		b := &caBundle{pool: x509.NewCertPool()}
		for len(data) > 0 {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse CA certificate in %s: %w", file, err)
			}
			b.pool.AddCert(c)
			b.certs = append(b.certs, c)
		}
		if len(b.certs) == 0 {
			return nil, errors.New("no PEM CERTIFICATE block in " + file)
		}
		return b, nil
	}
}

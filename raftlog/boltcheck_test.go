package raftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// bigLogMember runs a one-member cluster in dir with enough entries (some
// larger than a page) that the log bucket's root is a branch page, and
// stops it.
func bigLogMember(t *testing.T, dir string) (addr string) {
	t.Helper()
	r, err := Open(Config{ID: "a", Dir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true,
		FSM: &countFSM{applied: make(chan uint64, 4096)}})
	must(t, err)
	waitLeader(t, r)
	for i := range 1500 {
		data := fmt.Appendf(nil, "entry-%d-%s", i, strings.Repeat("x", 64))
		if i%100 == 0 {
			data = bytes.Repeat([]byte{byte(i)}, 20000) // overflow pages
		}
		if _, _, err := r.Apply(t.Context(), data); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	addr = r.LocalAddr()
	must(t, r.Shutdown())
	return addr
}

// boltFile is raft.db's bytes with the page ids the damage needs.
type boltFile struct {
	b        []byte
	pageSize int
	logsRoot uint64 // a branch page
	rootPage uint64 // the page of the top-level bucket
}

func readBoltFile(t *testing.T, path string) *boltFile {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	must(t, err)
	f := &boltFile{pageSize: db.Info().PageSize}
	must(t, db.View(func(tx *bolt.Tx) error {
		f.logsRoot = uint64(tx.Bucket([]byte("logs")).Root())
		return nil
	}))
	must(t, db.Close())
	f.b, err = os.ReadFile(path)
	must(t, err)
	m, ok := parseBoltMeta(f.b[f.pageSize:])
	if m0, ok0 := parseBoltMeta(f.b); ok0 && (!ok || m0.txid > m.txid) {
		m = m0
	}
	f.rootPage = m.root
	if flags := f.u16(f.logsRoot, 8); flags != boltBranchPage {
		t.Fatalf("the logs bucket's root page %d has type %#x: the test needs a branch", f.logsRoot, flags)
	}
	return f
}

func (f *boltFile) off(page uint64, at int) int { return int(page)*f.pageSize + at }
func (f *boltFile) u16(page uint64, at int) uint16 {
	return binary.LittleEndian.Uint16(f.b[f.off(page, at):])
}
func (f *boltFile) u64(page uint64, at int) uint64 {
	return binary.LittleEndian.Uint64(f.b[f.off(page, at):])
}
func (f *boltFile) put64(page uint64, at int, v uint64) {
	binary.LittleEndian.PutUint64(f.b[f.off(page, at):], v)
}

// child is the page id of a branch page's element i.
func (f *boltFile) child(page uint64, i int) uint64 {
	return f.u64(page, boltPageHeader+i*boltElemSize+8)
}

// inlineConf is the offset in the file of the conf bucket's inline page.
func (f *boltFile) inlineConf(t *testing.T) int {
	t.Helper()
	p := f.rootPage
	for i := range int(f.u16(p, 10)) {
		e := f.off(p, boltPageHeader+i*boltElemSize)
		pos := int(binary.LittleEndian.Uint32(f.b[e+4:]))
		ksize := int(binary.LittleEndian.Uint32(f.b[e+8:]))
		if string(f.b[e+pos:e+pos+ksize]) == "conf" {
			value := e + pos + ksize
			if binary.LittleEndian.Uint64(f.b[value:]) != 0 {
				t.Fatal("the conf bucket is not inline: the test needs it inline")
			}
			return value + boltBucketHdr
		}
	}
	t.Fatal("no conf bucket in the root page")
	return 0
}

// copyDir copies a stopped member's directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	must(t, filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	}))
}

// Damage inside a raft.db of the right size, where the tree points
// somewhere it must not, ended the process before Open could say a word: a
// page id past the file faulted through bbolt's memory map, and a page
// referenced twice or keys out of order made bbolt panic in a goroutine of
// its own. Now each is ErrDamaged naming the file; the undamaged copy
// (with pages that overflow) still opens.
func TestDamageInsideRaftDBIsAnError(t *testing.T) {
	base := t.TempDir()
	addr := bigLogMember(t, base)
	cases := []struct {
		name   string
		damage func(t *testing.T, f *boltFile)
		want   string // "" for the undamaged control
	}{
		{"undamaged", func(*testing.T, *boltFile) {}, ""},
		{"a child page past the end", func(t *testing.T, f *boltFile) {
			f.put64(f.logsRoot, boltPageHeader+8, 1<<40)
		}, "out of bounds"},
		{"a child page referenced twice", func(t *testing.T, f *boltFile) {
			f.put64(f.logsRoot, boltPageHeader+8, f.child(f.logsRoot, 1))
		}, "referenced twice"},
		{"a page that is its own child", func(t *testing.T, f *boltFile) {
			f.put64(f.logsRoot, boltPageHeader+8, f.logsRoot)
		}, "referenced twice"},
		{"keys out of order", func(t *testing.T, f *boltFile) {
			leaf := f.child(f.logsRoot, 1)
			e := f.off(leaf, boltPageHeader+boltElemSize) // element 1
			pos := int(binary.LittleEndian.Uint32(f.b[e+4:]))
			copy(f.b[e+pos:], make([]byte, 8)) // its key (an index) becomes 0
		}, "not above the key before it"},
		{"an element pointing past its page", func(t *testing.T, f *boltFile) {
			leaf := f.child(f.logsRoot, 2)
			binary.LittleEndian.PutUint32(f.b[f.off(leaf, boltPageHeader+4):], 1<<30)
		}, "past the page"},
		{"a page of the wrong type", func(t *testing.T, f *boltFile) {
			leaf := f.child(f.logsRoot, 3)
			binary.LittleEndian.PutUint16(f.b[f.off(leaf, 8):], 0x04)
		}, "where a branch or leaf page belongs"},
		{"a page that calls itself another", func(t *testing.T, f *boltFile) {
			leaf := f.child(f.logsRoot, 3)
			f.put64(leaf, 0, leaf+1)
		}, "calls itself"},
		{"an inline bucket's page damaged", func(t *testing.T, f *boltFile) {
			binary.LittleEndian.PutUint16(f.b[f.inlineConf(t)+8:], 0x01)
		}, "inline bucket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			path := filepath.Join(dir, "raft.db")
			f := readBoltFile(t, path)
			tc.damage(t, f)
			must(t, os.WriteFile(path, f.b, 0o600))
			r, err := reopen(dir, addr)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("the undamaged copy: %v", err)
				}
				waitLeader(t, r)
				must(t, r.Shutdown())
				return
			}
			if err == nil {
				_ = r.Shutdown()
				t.Fatalf("a raft.db with %s opened", tc.name)
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path+" is damaged") {
				t.Fatalf("error %q, want ErrDamaged naming %s and saying %q", err, path, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

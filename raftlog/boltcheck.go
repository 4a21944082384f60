package raftlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// bbolt trusts its file. Opened with NoFreelistSync (as raft.db is), it
// walks every page of the tree at open to rebuild its free list, and a
// damaged page there ends the process: a page number past the end is read
// through the memory map (a fault, not a panic), and a page referenced
// twice or keys out of order are reported by panicking in a goroutine of
// its own, where no recover reaches. So before bbolt opens raft.db, the
// tree is walked here with plain reads of the file, with every check that
// walk makes: each page within the file and referenced once, a branch or a
// leaf, its elements inside the page, keys in order within the page and
// within the bounds its parent gives; nested buckets, inline ones included.
// It reads each live page once, as bbolt's own walk does.

// bbolt's page layout: a 16-byte header (id, flags, count, overflow), then
// count 16-byte elements. A branch element is (pos, ksize, child page id),
// a leaf element (flags, pos, ksize, vsize); pos counts from the element.
// A bucket is a leaf value starting with its root page id and sequence;
// root 0 means the bucket's own leaf page follows inline.
const (
	boltBranchPage = 0x01
	boltLeafPage   = 0x02
	boltFreelist   = 0x10
	boltBucketFlag = 0x01
	boltElemSize   = 16
	boltBucketHdr  = 16
	boltNoFreelist = ^uint64(0)
	// boltMaxDepth bounds nesting (tree levels plus bucket levels); real
	// files stay far below it.
	boltMaxDepth = 64
)

// boltWalker walks one bbolt file's tree.
type boltWalker struct {
	f        *os.File
	pageSize int64
	hwm      uint64 // the meta page's page count: every page id is below it
	seen     map[uint64]bool
}

// checkBoltTree walks the tree of the file f whose newest valid meta page
// is m, and the free list page if the file has one.
func checkBoltTree(f *os.File, pageSize int64, m boltMeta) error {
	w := &boltWalker{f: f, pageSize: pageSize, hwm: m.pgid, seen: map[uint64]bool{0: true, 1: true}}
	if m.freelist != boltNoFreelist {
		p, err := w.read(m.freelist, "the free list")
		if err != nil {
			return err
		}
		if p.flags != boltFreelist {
			return fmt.Errorf("page %d: the free list page has type %#x", m.freelist, p.flags)
		}
	}
	if m.root == 0 {
		return fmt.Errorf("the meta page has no root bucket")
	}
	_, err := w.page(m.root, nil, nil, 0)
	return err
}

// boltPage is one page (with its overflow pages) as read from the file.
type boltPage struct {
	id    uint64
	flags uint16
	count int
	data  []byte // the whole page, header included
}

// read reads page id and its overflow pages, checking it is inside the
// file and referenced only once.
func (w *boltWalker) read(id uint64, what string) (boltPage, error) {
	if id < 2 || id >= w.hwm {
		return boltPage{}, fmt.Errorf("page %d (%s) is out of bounds: the file has %d pages", id, what, w.hwm)
	}
	first := make([]byte, w.pageSize)
	if _, err := w.f.ReadAt(first, int64(id)*w.pageSize); err != nil {
		return boltPage{}, fmt.Errorf("page %d (%s): %w", id, what, err)
	}
	p := boltPage{
		id:    binary.LittleEndian.Uint64(first[0:]),
		flags: binary.LittleEndian.Uint16(first[8:]),
		count: int(binary.LittleEndian.Uint16(first[10:])),
		data:  first,
	}
	overflow := uint64(binary.LittleEndian.Uint32(first[12:]))
	if p.id != id {
		return boltPage{}, fmt.Errorf("page %d (%s) calls itself page %d", id, what, p.id)
	}
	if id+overflow >= w.hwm {
		return boltPage{}, fmt.Errorf("page %d (%s) runs %d pages past the end of the file", id, what, id+overflow-w.hwm+1)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return boltPage{}, fmt.Errorf("page %d (%s) is referenced twice", i, what)
		}
		w.seen[i] = true
	}
	if overflow > 0 {
		p.data = make([]byte, int64(overflow+1)*w.pageSize)
		copy(p.data, first)
		if _, err := w.f.ReadAt(p.data[w.pageSize:], int64(id+1)*w.pageSize); err != nil {
			return boltPage{}, fmt.Errorf("page %d (%s): %w", id, what, err)
		}
	}
	return p, nil
}

// page checks the subtree at page id, whose keys must be >= lo (if set)
// and < hi (if set), and returns its largest key.
func (w *boltWalker) page(id uint64, lo, hi []byte, depth int) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page %d: the tree is nested more than %d deep", id, boltMaxDepth)
	}
	p, err := w.read(id, "a tree page")
	if err != nil {
		return nil, err
	}
	switch p.flags {
	case boltBranchPage:
		return w.branch(p, lo, hi, depth)
	case boltLeafPage:
		return w.leaf(p, lo, hi, depth)
	}
	return nil, fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, p.flags)
}

func (w *boltWalker) branch(p boltPage, lo, hi []byte, depth int) ([]byte, error) {
	if p.count == 0 {
		return nil, fmt.Errorf("page %d: a branch page without elements", p.id)
	}
	keys := make([][]byte, p.count)
	children := make([]uint64, p.count)
	for i := range p.count {
		at := boltPageHeader + i*boltElemSize
		if at+boltElemSize > len(p.data) {
			return nil, fmt.Errorf("page %d: %d elements do not fit in the page", p.id, p.count)
		}
		e := p.data[at:]
		key, err := slice(p, at, binary.LittleEndian.Uint32(e[0:]), uint64(binary.LittleEndian.Uint32(e[4:])))
		if err != nil {
			return nil, err
		}
		keys[i], children[i] = key, binary.LittleEndian.Uint64(e[8:])
	}
	// Each child once: a repeated one would otherwise first show as keys
	// out of bounds.
	kids := make(map[uint64]bool, len(children))
	for _, c := range children {
		if kids[c] || w.seen[c] {
			return nil, fmt.Errorf("page %d (a tree page) is referenced twice", c)
		}
		kids[c] = true
	}
	prev := lo
	for i, key := range keys {
		if err := keyInOrder(p.id, i, key, prev, hi, i == 0); err != nil {
			return nil, err
		}
		next := hi
		if i+1 < len(keys) {
			next = keys[i+1]
		}
		top, err := w.page(children[i], key, next, depth+1)
		if err != nil {
			return nil, err
		}
		if top != nil {
			prev = top
		} else {
			prev = key
		}
	}
	return prev, nil
}

func (w *boltWalker) leaf(p boltPage, lo, hi []byte, depth int) ([]byte, error) {
	var prev []byte
	for i := range p.count {
		at := boltPageHeader + i*boltElemSize
		if at+boltElemSize > len(p.data) {
			return nil, fmt.Errorf("page %d: %d elements do not fit in the page", p.id, p.count)
		}
		e := p.data[at:]
		flags := binary.LittleEndian.Uint32(e[0:])
		pos, ksize, vsize := binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
		kv, err := slice(p, at, pos, uint64(ksize)+uint64(vsize))
		if err != nil {
			return nil, err
		}
		key, value := kv[:ksize], kv[ksize:]
		if i == 0 {
			prev = lo
		}
		if err := keyInOrder(p.id, i, key, prev, hi, i == 0); err != nil {
			return nil, err
		}
		prev = key
		if flags&boltBucketFlag != 0 {
			if err := w.bucket(p.id, key, value, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return prev, nil
}

// bucket checks a nested bucket: its root page, or its inline leaf page.
func (w *boltWalker) bucket(parent uint64, name, value []byte, depth int) error {
	if len(value) < boltBucketHdr {
		return fmt.Errorf("page %d: bucket %q has a %d-byte header", parent, name, len(value))
	}
	root := binary.LittleEndian.Uint64(value)
	if root != 0 {
		_, err := w.page(root, nil, nil, depth)
		return err
	}
	inline := value[boltBucketHdr:]
	if len(inline) < boltPageHeader {
		return fmt.Errorf("page %d: inline bucket %q is %d bytes", parent, name, len(inline))
	}
	p := boltPage{
		id:    parent,
		flags: binary.LittleEndian.Uint16(inline[8:]),
		count: int(binary.LittleEndian.Uint16(inline[10:])),
		data:  inline,
	}
	if p.flags != boltLeafPage {
		return fmt.Errorf("page %d: inline bucket %q has page type %#x", parent, name, p.flags)
	}
	_, err := w.leaf(p, nil, nil, depth)
	return err
}

// slice returns n bytes at pos past the element at offset at, if the page
// holds them.
func slice(p boltPage, at int, pos uint32, n uint64) ([]byte, error) {
	start := uint64(at) + uint64(pos)
	if start+n > uint64(len(p.data)) {
		return nil, fmt.Errorf("page %d: an element points %d bytes past the page", p.id, start+n-uint64(len(p.data)))
	}
	return p.data[start : start+n], nil
}

// keyInOrder: keys rise strictly within a page, the first is not below lo,
// and none reaches hi.
func keyInOrder(page uint64, i int, key, prev, hi []byte, first bool) error {
	if first {
		if prev != nil && bytes.Compare(key, prev) < 0 {
			return fmt.Errorf("page %d: key %d is below the bound its parent sets", page, i)
		}
	} else if bytes.Compare(key, prev) <= 0 {
		return fmt.Errorf("page %d: key %d is not above the key before it", page, i)
	}
	if hi != nil && bytes.Compare(key, hi) >= 0 {
		return fmt.Errorf("page %d: key %d is not below the bound its parent sets", page, i)
	}
	return nil
}

package fsm_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/backplane/backplane/fsm"
	"github.com/hashicorp/raft"
)

// memorySink is a raft.SnapshotSink that keeps the snapshot in memory. With
// failAt set, writes past that many bytes fail.
type memorySink struct {
	bytes.Buffer
	failAt            int
	closed, cancelled bool
}

var errSinkFull = errors.New("sink full")

func (s *memorySink) Write(p []byte) (int, error) {
	if s.failAt > 0 && s.Len()+len(p) > s.failAt {
		return 0, errSinkFull
	}
	return s.Buffer.Write(p)
}

func (s *memorySink) ID() string    { return "test-snapshot" }
func (s *memorySink) Cancel() error { s.cancelled = true; return nil }
func (s *memorySink) Close() error  { s.closed = true; return nil }

// persist persists and releases a snapshot, and returns its bytes.
func persist(t *testing.T, snap raft.FSMSnapshot) []byte {
	t.Helper()
	defer snap.Release()
	var sink memorySink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: got error %v, want nil", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink: got closed %v cancelled %v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// snapshot takes, persists and releases a snapshot of tf.
func (tf *testFSM) snapshot(t *testing.T) []byte {
	t.Helper()
	snap, err := tf.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: got error %v, want nil", err)
	}
	return persist(t, snap)
}

func (tf *testFSM) restore(data []byte) error {
	return tf.Restore(io.NopCloser(bytes.NewReader(data)))
}

var snapshotConfig = fsm.Config{Retention: fsm.Retention{MaxMessages: 100}}

// populate gives f messages to every audience (some already trimmed),
// groups, connections, nodes and an idempotency key.
func populate(f *testFSM) {
	for i := range 5 {
		f.mustApply(t0, repeat(toAll(), 20)...)
		f.mustApply(t0, repeat(publish(fsm.ToGroups, "g1", "g2"), 10)...)
		f.mustApply(t0, publish(fsm.ToUsers, "u1"), publish(fsm.ToConnections, "c1"), toAll("c1"))
		f.mustApply(t0, join("g1", fsm.MemberConnection, "c1"), join("g2", fsm.MemberUser, "u1"),
			connOpen("c1", "u1", "n1"), connOpen("c2", "", "n2"), leave("g1", fsm.MemberConnection, "c2"))
		f.mustApply(t0, fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}),
			fsm.EncodeNodeInfo(&fsm.NodeInfo{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}))
		if i == 4 {
			f.mustApply(t0, keyed("key"))
		}
	}
}

// populatedSnapshot populates src, takes its snapshot data, and restores
// data into want, a fresh store: the state any later restore of data must
// give.
func populatedSnapshot(t *testing.T) (src *testFSM, data []byte, want *testFSM) {
	t.Helper()
	src = newTestFSM(t, snapshotConfig)
	populate(src)
	data = src.snapshot(t)
	want = newTestFSM(t, snapshotConfig)
	if err := want.restore(data); err != nil {
		t.Fatalf("Restore: got error %v, want nil", err)
	}
	return src, data, want
}

// snapshotReaders are the readers whose reads must survive a snapshot.
var snapshotReaders = []fsm.Filter{
	{Hub: hub, Broadcast: true, Groups: []string{"g1", "g2"}, Self: "c1"},
	{Hub: hub, Users: []string{"u1"}, Connections: []string{"c1"}},
	{Hub: hub, Groups: []string{"g2"}},
}

// checkSameState fails the test unless got answers every read as want does.
func checkSameState(t *testing.T, got, want *testFSM) {
	t.Helper()
	if g, w := [3]uint64{got.AppliedIndex(), got.FirstMessage(), got.LastMessage()},
		[3]uint64{want.AppliedIndex(), want.FirstMessage(), want.LastMessage()}; g != w {
		t.Fatalf("applied, first, last: got %v, want %v", g, w)
	}
	gs, err1 := got.Stats()
	ws, err2 := want.Stats()
	if err1 != nil || err2 != nil || gs != ws {
		t.Fatalf("Stats: got %+v (%v), want %+v (%v)", gs, err1, ws, err2)
	}
	for _, r := range snapshotReaders {
		for _, after := range []uint64{0, want.FirstMessage() + 10} {
			if g, w := got.read(&r, after, 1000), want.read(&r, after, 1000); !reflect.DeepEqual(g, w) {
				t.Fatalf("Read(%+v, %d): got %+v, want %+v", r, after, g, w)
			}
		}
	}
	for _, m := range []struct {
		kind fsm.MemberKind
		name string
	}{{fsm.MemberConnection, "c1"}, {fsm.MemberConnection, "c2"}, {fsm.MemberUser, "u1"}} {
		g, err1 := got.GroupsOf(hub, m.kind, m.name)
		w, err2 := want.GroupsOf(hub, m.kind, m.name)
		if err1 != nil || err2 != nil || !slices.Equal(g, w) {
			t.Fatalf("GroupsOf(%s): got %q (%v), want %q (%v)", m.name, g, err1, w, err2)
		}
	}
	for _, c := range []string{"c1", "c2"} {
		g, gok, err1 := got.Connection(hub, c)
		w, wok, err2 := want.Connection(hub, c)
		if err1 != nil || err2 != nil || g != w || gok != wok {
			t.Fatalf("Connection(%s): got %+v %v (%v), want %+v %v (%v)", c, g, gok, err1, w, wok, err2)
		}
	}
	gu, err1 := got.UserHasConnections(hub, "u1")
	wu, err2 := want.UserHasConnections(hub, "u1")
	if err1 != nil || err2 != nil || gu != wu {
		t.Fatalf("UserHasConnections: got %v (%v), want %v (%v)", gu, err1, wu, err2)
	}
	gn, err1 := got.Nodes()
	wn, err2 := want.Nodes()
	if err1 != nil || err2 != nil || !slices.Equal(gn, wn) {
		t.Fatalf("Nodes: got %v (%v), want %v (%v)", gn, err1, wn, err2)
	}
}

func TestSnapshotRestore(t *testing.T) {
	src := newTestFSM(t, snapshotConfig)
	populate(src)
	if src.FirstMessage() == 1 {
		t.Fatalf("FirstMessage: got 1, want retention to have trimmed the history")
	}
	dst := newTestFSM(t, snapshotConfig)
	changed := dst.Changed()
	if err := dst.restore(src.snapshot(t)); err != nil {
		t.Fatalf("Restore: got error %v, want nil", err)
	}
	select {
	case <-changed:
	default:
		t.Fatalf("Changed channel after Restore: got open, want closed")
	}
	checkSameState(t, dst, src)

	// Both go on from the same log position and stay identical.
	dst.Index = src.Index
	keyIndex := src.LastMessage() // populate ends with the keyed publish
	for _, f := range []*testFSM{src, dst} {
		res := f.mustApply(t0, toAll(), keyed("key"), publish(fsm.ToGroups, "g2"))
		want := []fsm.Result{{Index: keyIndex + 1}, {Index: keyIndex, Duplicate: true}, {Index: keyIndex + 2}}
		if !slices.Equal(res, want) {
			t.Fatalf("apply after restore: got %+v, want %+v", res, want)
		}
	}
	checkSameState(t, dst, src)
}

func TestRestoreReplacesState(t *testing.T) {
	src, data, want := populatedSnapshot(t)

	// A store with state of its own: nothing of it survives.
	dst := newTestFSM(t, snapshotConfig)
	for range 400 {
		dst.mustApply(t0, toAll(), join("old", fsm.MemberUser, "u1"), connOpen("c3", "u3", "n3"))
	}
	if err := dst.restore(data); err != nil {
		t.Fatalf("Restore over state: got error %v, want nil", err)
	}
	checkSameState(t, dst, want)
	checkHasMembers(t, dst, "old", false)
	checkUser(t, dst, "u3", false)

	// A store restored to its own past, as a lagging follower would be.
	src.mustApply(t0, repeat(toAll(), 50)...)
	if err := src.restore(data); err != nil {
		t.Fatalf("Restore of its own snapshot: got error %v, want nil", err)
	}
	checkSameState(t, src, want)
}

func TestSnapshotIsPointInTime(t *testing.T) {
	src := newTestFSM(t, snapshotConfig)
	want := newTestFSM(t, snapshotConfig)
	populate(src)
	populate(want)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: got error %v, want nil", err)
	}
	// Applying goes on between Snapshot and Persist, and during Persist.
	src.mustApply(t0, repeat(toAll(), 30)...)
	src.mustApply(t0, connClose("c1"), leave("", fsm.MemberUser, "u1"), fsm.EncodeNodeRemove("n2"))
	sink := &memorySink{}
	done := make(chan error, 1)
	go func() { done <- snap.Persist(sink) }()
	for range 20 {
		src.mustApply(t0, repeat(publish(fsm.ToGroups, "g1"), 10)...)
	}
	if err := <-done; err != nil || !sink.closed {
		t.Fatalf("Persist: got error %v (sink closed %v), want nil (closed)", err, sink.closed)
	}
	snap.Release()
	data := sink.Bytes()

	dst := newTestFSM(t, snapshotConfig)
	if err := dst.restore(data); err != nil {
		t.Fatalf("Restore: got error %v, want nil", err)
	}
	checkSameState(t, dst, want)
	if src.LastMessage() != want.LastMessage()+230 {
		t.Fatalf("source LastMessage: got %d, want %d", src.LastMessage(), want.LastMessage()+230)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	src := newTestFSM(t, snapshotConfig)
	populate(src)
	valid := src.snapshot(t)
	header := valid[:8]
	noise := make([]byte, 64<<10)
	for i := range noise {
		noise[i] = byte(rand.N(256))
	}
	flipped := bytes.Clone(valid)
	flipped[7] = 2 // a future format version
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short header", header[:5]},
		{"noise", noise},
		{"unsupported version", flipped},
		{"header only", header},
		{"header and noise", append(bytes.Clone(header), noise...)},
		{"header and a page", valid[:8+4096]},
		{"truncated to half", valid[:len(valid)/2]},
		{"truncated by one byte", valid[:len(valid)-1]},
	} {
		dir := t.TempDir()
		f := newTestFSM(t, fsm.Config{Dir: dir, Retention: snapshotConfig.Retention})
		want := newTestFSM(t, snapshotConfig)
		for _, tf := range []*testFSM{f, want} {
			tf.mustApply(t0, repeat(toAll(), 30)...)
			tf.mustApply(t0, join("g1", fsm.MemberConnection, "c1"), connOpen("c1", "u1", "n1"))
		}
		if err := f.restore(c.data); err == nil {
			t.Fatalf("%s: Restore: got nil error, want one", c.name)
		}
		checkSameState(t, f, want)
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			t.Fatalf("%s: store directory: got %v (%v), want only the store", c.name, entries, err)
		}
		if res := f.mustApply(t0, toAll()); res[0].Index != 31 {
			t.Fatalf("%s: publish after the failed restore: got index %d, want 31", c.name, res[0].Index)
		}
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	populate(f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: got error %v, want nil", err)
	}
	defer snap.Release()
	sink := &memorySink{failAt: 4096}
	if err := snap.Persist(sink); !errors.Is(err, errSinkFull) {
		t.Fatalf("Persist: got error %v, want one wrapping %v", err, errSinkFull)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink: got cancelled %v closed %v, want cancelled only", sink.cancelled, sink.closed)
	}
}

func TestSnapshotAfterClose(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	if err := f.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
	if _, err := f.Snapshot(); err == nil {
		t.Fatalf("Snapshot after Close: got nil error, want one")
	}
}

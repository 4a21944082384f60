package fsm_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backplane/backplane/fsm"
)

// keyed encodes a broadcast to hub carrying an idempotency key.
func keyed(key string) fsm.Command {
	return fsm.EncodePublish(&fsm.Publish{Hub: hub, Audience: fsm.ToAll, Target: "recv", Arguments: []byte("[]"), IdempotencyKey: key})
}

// checkKeys fails the test unless the store remembers exactly want, with one
// expiry record per key.
func checkKeys(t *testing.T, f *testFSM, want ...string) {
	t.Helper()
	keys, expiry, err := fsm.IdempotencyKeys(f.FSM)
	if err != nil {
		t.Fatalf("IdempotencyKeys: got error %v, want nil", err)
	}
	if !slices.Equal(keys, want) || expiry != len(want) {
		t.Fatalf("remembered keys: got %q with %d expiry records, want %q with %d", keys, expiry, want, len(want))
	}
}

func TestIdempotencyDuplicateWithinWindow(t *testing.T) {
	f := newTestFSM(t, fsm.Config{IdempotencyWindow: time.Minute})
	checkIndexes(t, "first publishes", indexesOf(f.mustApply(t0, keyed("k"), keyed(""), keyed(""))), []uint64{1, 2, 3})

	res := f.mustApply(t0+int64(59*time.Second), keyed("k"))
	if res[0] != (fsm.Result{Index: 1, Duplicate: true}) {
		t.Fatalf("retry within the window: got %+v, want index 1, duplicate", res[0])
	}
	// Two publishes with one key in the same entry: the second is the retry.
	res = f.mustApply(t0+int64(time.Second), keyed("j"), keyed("j"))
	if res[0] != (fsm.Result{Index: 4}) || res[1] != (fsm.Result{Index: 4, Duplicate: true}) {
		t.Fatalf("same key twice in one entry: got %+v, want index 4 then its duplicate", res)
	}
	if got := f.LastMessage(); got != 4 {
		t.Fatalf("LastMessage: got %d, want 4", got)
	}
	checkIndexes(t, "messages", f.readAll(&fsm.Filter{Hub: hub, Broadcast: true}, 0, 100), span(1, 4))
	checkKeys(t, f, "j", "k")
}

func TestIdempotencyAfterWindow(t *testing.T) {
	window := time.Minute
	f := newTestFSM(t, fsm.Config{IdempotencyWindow: window})
	f.mustApply(t0, keyed("k"))
	later := t0 + int64(window+time.Second)
	res := f.mustApply(later, keyed("k"))
	if res[0] != (fsm.Result{Index: 2}) {
		t.Fatalf("publish after the window: got %+v, want a new message 2", res[0])
	}
	// The key now names the new message, for a new window.
	res = f.mustApply(later+int64(window/2), keyed("k"))
	if res[0] != (fsm.Result{Index: 2, Duplicate: true}) {
		t.Fatalf("retry in the new window: got %+v, want index 2, duplicate", res[0])
	}
	checkKeys(t, f, "k")
}

func TestIdempotencyKeysExpire(t *testing.T) {
	window := time.Minute
	f := newTestFSM(t, fsm.Config{IdempotencyWindow: window})
	f.mustApply(t0, keyed("a"), keyed("b"))
	f.mustApply(t0+int64(40*time.Second), keyed("c"))
	checkKeys(t, f, "a", "b", "c")

	// Any command entry past the window forgets the older keys.
	f.mustApply(t0+int64(window+20*time.Second), join("g", fsm.MemberUser, "u"))
	checkKeys(t, f, "c")

	// A proposer whose clock is behind re-publishes "a" inside its original
	// window: the key is forgotten, so the publish is new. "c" is still
	// remembered.
	behind := t0 + int64(30*time.Second)
	res := f.mustApply(behind, keyed("a"), keyed("c"))
	if res[0] != (fsm.Result{Index: 4}) || res[1] != (fsm.Result{Index: 3, Duplicate: true}) {
		t.Fatalf("after expiry: got %+v, want a new message 4 and a duplicate of 3", res)
	}
	checkKeys(t, f, "a", "c")

	// Far in the future every key is gone; a reused key leaves no stale
	// expiry record behind.
	f.mustApply(t0+int64(time.Hour), toAll())
	checkKeys(t, f)
	res = f.mustApply(t0+int64(time.Hour), keyed("a"))
	if res[0] != (fsm.Result{Index: 6}) {
		t.Fatalf("re-publish beyond the window: got %+v, want a new message 6", res[0])
	}
	checkKeys(t, f, "a")
}

func TestIdempotencyKeyTooLong(t *testing.T) {
	f := newTestFSM(t, fsm.Config{})
	// Past bbolt's key limit the key would fail the store and stop every
	// replica; it must be rejected before that.
	longest := strings.Repeat("k", fsm.MaxIdempotencyKeyLen)
	res := f.apply(t0, keyed(strings.Repeat("k", 40_000)), keyed(longest+"k"), keyed(longest))
	for i := range 2 {
		if !errors.Is(res[i].Err, fsm.ErrInvalidCommand) {
			t.Fatalf("oversized key %d: got error %v, want one wrapping %v", i, res[i].Err, fsm.ErrInvalidCommand)
		}
	}
	checkIndexes(t, "results", indexesOf(res), []uint64{0, 0, 1})
	checkKeys(t, f, longest)
}

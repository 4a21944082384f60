// Package fsmtest is the FSM test kit: it feeds an fsm.FSM hand-built Raft
// entries, with no Raft, the way the FSM unit tests and the transport tests
// that need a committed history do. It is imported only by _test.go files.
package fsmtest

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/backplane/backplane/fsm"
)

// Applier is an FSM that is handed entries directly: each entry gets the
// next Raft index (term 1).
type Applier struct {
	*fsm.FSM
	Index uint64 // the last Raft index handed out
}

// Open opens an FSM in a fresh temporary directory (unless cfg.Dir is set)
// and closes it when the test ends, failing the test if Close fails.
func Open(tb testing.TB, cfg fsm.Config) *Applier {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = tb.TempDir()
	}
	f, err := fsm.New(cfg)
	if err != nil {
		tb.Fatalf("New: got error %v, want nil", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("Close: got error %v, want nil", err)
		}
	})
	return &Applier{FSM: f}
}

// Log builds the next entry of type typ carrying data.
func (a *Applier) Log(typ raft.LogType, data []byte) *raft.Log {
	a.Index++
	return &raft.Log{Index: a.Index, Term: 1, Type: typ, Data: data}
}

// Entry builds the next command entry, stamped ts (Unix nanoseconds).
func (a *Applier) Entry(ts int64, cmds ...fsm.Command) *raft.Log {
	return a.Log(raft.LogCommand, fsm.EncodeEntry(ts, cmds))
}

// Commit applies the next command entry, stamped ts, and returns the FSM's
// response to it.
func (a *Applier) Commit(ts int64, cmds ...fsm.Command) any {
	return a.Apply(a.Entry(ts, cmds...))
}

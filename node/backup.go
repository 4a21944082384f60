package node

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/raftlog"
)

// Backup headers: what the streamed backup holds.
const (
	backupAppliedHeader     = "Backplane-Backup-Applied-Index"
	backupLastMessageHeader = "Backplane-Backup-Last-Message"
)

// handleBackup streams a consistent backup of this node's state: the
// state as of the Raft index in Backplane-Backup-Applied-Index, in the
// snapshot format. Ask a ready node: its state then includes everything
// acknowledged half a second earlier (readiness.go).
func (n *Node) handleBackup(w http.ResponseWriter, r *http.Request) {
	if reason := n.notReady(); reason != "" {
		writeError(w, r, fmt.Errorf("%w: not caught up (%s); back up a ready node", ErrNoLeader, reason))
		return
	}
	b, err := n.fsm.Backup()
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer b.Release()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="backplane-%s-%d.backup"`, n.cfg.ID, b.Info.AppliedIndex))
	h.Set(backupAppliedHeader, strconv.FormatUint(b.Info.AppliedIndex, 10))
	h.Set(backupLastMessageHeader, strconv.FormatUint(b.Info.LastMessage, 10))
	if _, err := b.WriteTo(w); err != nil {
		// The status is sent: end the response without its last bytes,
		// which the restore's check refuses.
		n.log.Warn("backup cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	n.log.Info("backup streamed", "applied_index", b.Info.AppliedIndex, "last_message", b.Info.LastMessage)
}

// seedFromBackup prepares the data directory from cfg.RestoreFrom: it
// checks the backup, then writes it as the Raft snapshot of a new
// one-member cluster that this node leads. A directory that already holds
// Raft state is left alone (the flag is ignored, as -join is).
func (n *Node) seedFromBackup() error {
	cfg := n.cfg
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if has, err := raftlog.HasState(raftDir); err != nil || has {
		if err == nil {
			n.log.Info("existing Raft state found: ignoring -restore")
		}
		return err
	}
	info, err := fsm.CheckBackup(cfg.RestoreFrom, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("restore from %s: %w", cfg.RestoreFrom, err)
	}
	file, err := os.Open(cfg.RestoreFrom)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer file.Close()
	raftAddr := cfg.AdvertiseRaft
	if raftAddr == "" {
		raftAddr = cfg.RaftAddr
	}
	err = raftlog.Seed(raftlog.SeedConfig{
		Dir: raftDir, ID: cfg.ID, RaftAddr: raftAddr,
		Index: info.AppliedIndex, State: file,
	})
	if err != nil {
		return fmt.Errorf("restore from %s: %w", cfg.RestoreFrom, err)
	}
	n.log.Info("seeded a new cluster from a backup", "file", cfg.RestoreFrom,
		"applied_index", info.AppliedIndex, "last_message", info.LastMessage)
	return nil
}

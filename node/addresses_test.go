package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backplane/backplane/fsm"
)

func TestReadAddresses(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadAddresses(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("before the node writes the file: %v, want fs.ErrNotExist", err)
	}

	path := filepath.Join(dir, AddressesFile)
	if err := os.WriteFile(path, []byte(`{"id":"n1","http_addr":"127.0.0.1:8080","raft_addr":"127.0.0.1:7000"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAddresses(dir)
	if want := (fsm.NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:8080", RaftAddr: "127.0.0.1:7000"}); err != nil || got != want {
		t.Errorf("ReadAddresses = %+v, %v; want %+v", got, err, want)
	}

	if err := os.WriteFile(path, []byte(`{"id":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAddresses(dir); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a cut file: %v, want an error naming %s", err, path)
	}
}

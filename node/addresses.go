package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/backplane/backplane/fsm"
)

// ReadAddresses reads the AddressesFile that a node writes into its data
// directory dataDir once it listens: its id and bound addresses. Until the
// node has written it, the error wraps fs.ErrNotExist.
func ReadAddresses(dataDir string) (fsm.NodeInfo, error) {
	path := filepath.Join(dataDir, AddressesFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fsm.NodeInfo{}, fmt.Errorf("read the node's addresses: %w", err)
	}
	var info fsm.NodeInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return fsm.NodeInfo{}, fmt.Errorf("parse %s (%q): %w", path, b, err)
	}
	return info, nil
}

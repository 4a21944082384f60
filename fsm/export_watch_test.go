package fsm

// ListedWaits counts the waits on several Watches, and callbacks, still
// listed (test-only).
func ListedWaits(f *FSM) int {
	f.watchers.mu.Lock()
	defer f.watchers.mu.Unlock()
	seen := map[*multiWait]bool{}
	for _, set := range f.watchers.multi {
		for _, mw := range set.all() {
			seen[mw] = true
		}
	}
	return len(seen)
}

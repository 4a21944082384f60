package fsm

// HubWaits counts the waits on several hubs still listed (test-only).
func HubWaits(f *FSM) int {
	f.hubs.mu.Lock()
	defer f.hubs.mu.Unlock()
	seen := map[*multiWait]bool{}
	for _, set := range f.hubs.multi {
		for mw := range set {
			seen[mw] = true
		}
	}
	return len(seen)
}

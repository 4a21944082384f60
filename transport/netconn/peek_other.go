//go:build !unix

package netconn

// peekReadable is nil where there is no MSG_PEEK through the poller: idle
// readers then wait inside gorilla's read, with a larger stack.
func peekReadable(*[1]byte) func(fd uintptr) bool { return nil }

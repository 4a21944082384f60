//go:build unix

package netconn

import (
	"errors"
	"syscall"
)

// peekReadable returns the function an idle reader hands to
// syscall.RawConn.Read: it reports true once the socket has a byte to read
// (or an error or EOF to report), without consuming anything; false makes
// the runtime's poller wait for readability. one is the peek's buffer.
func peekReadable(one *[1]byte) func(fd uintptr) bool {
	return func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	}
}

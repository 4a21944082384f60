package hubproto

// MessagePack records are framed by a VarInt length prefix: 7 bits per byte,
// least significant group first, high bit set on every byte but the last. At
// most 5 bytes are used, and the 5th may only carry 3 bits, which limits a
// body to 2^31-1 bytes (the same rule as ASP.NET's BinaryMessageParser).

const (
	maxVarintLen = 5
	// maxBodyLen is the largest body a 5-byte prefix may declare.
	maxBodyLen = 1<<31 - 1
)

// varintLen returns the number of bytes appendVarint writes for n.
func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	case n < 1<<28:
		return 4
	}
	return 5
}

// appendVarint appends the length prefix for n (0 <= n <= maxBodyLen).
func appendVarint(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// putVarint writes the prefix for n into b, which must be varintLen(n) long.
func putVarint(b []byte, n int) {
	i := 0
	for n >= 0x80 {
		b[i] = byte(n) | 0x80
		n >>= 7
		i++
	}
	b[i] = byte(n)
}

// readVarint decodes a length prefix at the start of buf. It returns the
// value and the prefix size; size 0 means buf holds only part of a prefix.
// A prefix longer than 5 bytes or above maxBodyLen is an ErrMalformed error.
func readVarint(buf []byte) (n int, size int, err error) {
	var v uint32
	for i := 0; i < maxVarintLen; i++ {
		if i >= len(buf) {
			return 0, 0, nil
		}
		b := buf[i]
		if i == maxVarintLen-1 && b > 0x07 {
			return 0, 0, errorf(ErrMalformed, "messagepack length prefix exceeds 2GB")
		}
		v |= uint32(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return int(v), i + 1, nil
		}
	}
	// Unreachable: the 5th byte is at most 0x07, so its high bit is clear.
	return 0, 0, errorf(ErrMalformed, "messagepack length prefix too long")
}

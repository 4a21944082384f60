package hubproto

import (
	"encoding/binary"
	"math"
)

// mpReader is a validating MessagePack reader over one record body. It never
// allocates except where it returns a Go string.
type mpReader struct {
	buf []byte
	pos int
	// jsonForm makes toJSON write the documented JSON form of values that
	// JSON cannot hold (see MsgpackToJSONForm) instead of failing.
	jsonForm bool
}

func (r *mpReader) errorf(format string, args ...any) error {
	return errorf(ErrMalformed, "messagepack offset %d: "+format, append([]any{r.pos}, args...)...)
}

// need returns an error unless n more bytes are available.
func (r *mpReader) need(n int) error {
	if n < 0 || len(r.buf)-r.pos < n {
		return r.errorf("unexpected end of data")
	}
	return nil
}

// peek returns the next format byte without consuming it.
func (r *mpReader) peek() (byte, error) {
	if r.pos >= len(r.buf) {
		return 0, r.errorf("unexpected end of data")
	}
	return r.buf[r.pos], nil
}

// uintN reads an n-byte big-endian unsigned integer (n is 1, 2, 4 or 8).
func (r *mpReader) uintN(n int) (uint64, error) {
	if err := r.need(n); err != nil {
		return 0, err
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// readNil consumes a nil and reports whether there was one.
func (r *mpReader) readNil() bool {
	if r.pos < len(r.buf) && r.buf[r.pos] == mpNil {
		r.pos++
		return true
	}
	return false
}

// containerLen reads an array or map header. Each element needs at least
// minElem bytes, which bounds the length by the data left.
func (r *mpReader) containerLen(fix, fixMask, c16, c32 byte, minElem int, what string) (int, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c&fixMask == fix:
		r.pos++
		n = uint64(c &^ fixMask)
	case c == c16:
		r.pos++
		n, err = r.uintN(2)
	case c == c32:
		r.pos++
		n, err = r.uintN(4)
	default:
		return 0, r.errorf("want %s, got format 0x%02x", what, c)
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.buf)-r.pos)/uint64(minElem) {
		return 0, r.errorf("%s length %d exceeds the data", what, n)
	}
	return int(n), nil
}

// readArrayLen reads an array header.
func (r *mpReader) readArrayLen() (int, error) {
	return r.containerLen(mpFixArray, 0xf0, mpArray16, mpArray32, 1, "array")
}

// readMapLen reads a map header.
func (r *mpReader) readMapLen() (int, error) {
	return r.containerLen(mpFixMap, 0xf0, mpMap16, mpMap32, 2, "map")
}

// strLen reads a str header if there is one; ok is false (and nothing is
// consumed) for any other format.
func (r *mpReader) strLen() (n int, ok bool, err error) {
	c, err := r.peek()
	if err != nil {
		return 0, false, err
	}
	var u uint64
	switch {
	case c&0xe0 == mpFixStr:
		r.pos++
		u = uint64(c & 0x1f)
	case c == mpStr8:
		r.pos++
		u, err = r.uintN(1)
	case c == mpStr16:
		r.pos++
		u, err = r.uintN(2)
	case c == mpStr32:
		r.pos++
		u, err = r.uintN(4)
	default:
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if u > uint64(len(r.buf)-r.pos) {
		return 0, false, r.errorf("string length %d exceeds the data", u)
	}
	return int(u), true, nil
}

// readStringOrNil reads a str, or a nil (isNil true).
func (r *mpReader) readStringOrNil(what string) (s string, isNil bool, err error) {
	if r.readNil() {
		return "", true, nil
	}
	n, ok, err := r.strLen()
	if err != nil {
		return "", false, err
	}
	if !ok {
		return "", false, r.errorf("want %s as a string, got format 0x%02x", what, r.buf[r.pos])
	}
	s = string(r.buf[r.pos : r.pos+n])
	r.pos += n
	return s, false, nil
}

// readString reads a str; nil is an error.
func (r *mpReader) readString(what string) (string, error) {
	s, isNil, err := r.readStringOrNil(what)
	if err == nil && isNil {
		return "", r.errorf("want %s as a string, got nil", what)
	}
	return s, err
}

// readInt64 reads any integer format whose value fits in an int64.
func (r *mpReader) readInt64(what string) (int64, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	r.pos++
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c >= mpUint8 && c <= mpUint64:
		u, err := r.uintN(1 << (c - mpUint8))
		if err != nil {
			return 0, err
		}
		if u > math.MaxInt64 {
			return 0, r.errorf("%s %d out of range", what, u)
		}
		return int64(u), nil
	case c >= mpInt8 && c <= mpInt64:
		n := 1 << (c - mpInt8)
		u, err := r.uintN(n)
		if err != nil {
			return 0, err
		}
		shift := 64 - 8*n
		return int64(u<<shift) >> shift, nil
	}
	r.pos--
	return 0, r.errorf("want %s as an integer, got format 0x%02x", what, c)
}

// readBool reads true or false.
func (r *mpReader) readBool(what string) (bool, error) {
	c, err := r.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case mpTrue:
		r.pos++
		return true, nil
	case mpFalse:
		r.pos++
		return false, nil
	}
	return false, r.errorf("want %s as a boolean, got format 0x%02x", what, c)
}

// skipValue validates and skips one value, returning its raw bytes.
func (r *mpReader) skipValue(depth int) ([]byte, error) {
	start := r.pos
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	var skip int // payload bytes after the format byte and its length field
	switch {
	case c <= 0x7f || c >= 0xe0 || c == mpNil || c == mpFalse || c == mpTrue:
		r.pos++
	case c&0xe0 == mpFixStr || c == mpStr8 || c == mpStr16 || c == mpStr32:
		n, _, err := r.strLen()
		if err != nil {
			return nil, err
		}
		skip = n
	case c&0xf0 == mpFixArray || c == mpArray16 || c == mpArray32:
		n, err := r.readArrayLen()
		if err != nil {
			return nil, err
		}
		if err := r.skipN(n, depth); err != nil {
			return nil, err
		}
	case c&0xf0 == mpFixMap || c == mpMap16 || c == mpMap32:
		n, err := r.readMapLen()
		if err != nil {
			return nil, err
		}
		if err := r.skipN(2*n, depth); err != nil {
			return nil, err
		}
	case c >= mpBin8 && c <= mpBin32:
		r.pos++
		u, err := r.uintN(1 << (c - mpBin8))
		if err != nil {
			return nil, err
		}
		skip = clampLen(u)
	case c >= mpExt8 && c <= mpExt32:
		r.pos++
		u, err := r.uintN(1 << (c - mpExt8))
		if err != nil {
			return nil, err
		}
		n := clampLen(u)
		if n < 0 {
			return nil, r.errorf("extension length %d exceeds the data", u)
		}
		skip = n + 1 // the type byte comes before the data
	case c == mpFloat32 || c == mpFloat64:
		r.pos++
		skip = 4 << (c - mpFloat32)
	case c >= mpUint8 && c <= mpUint64:
		r.pos++
		skip = 1 << (c - mpUint8)
	case c >= mpInt8 && c <= mpInt64:
		r.pos++
		skip = 1 << (c - mpInt8)
	case c >= mpFixExt1 && c <= mpFixExt16:
		r.pos++
		skip = 1 + 1<<(c-mpFixExt1)
	default: // 0xc1 is never used
		return nil, r.errorf("invalid format byte 0x%02x", c)
	}
	if err := r.need(skip); err != nil {
		return nil, err
	}
	r.pos += skip
	return r.buf[start:r.pos], nil
}

// skipN skips n values nested one level below depth.
func (r *mpReader) skipN(n, depth int) error {
	if depth >= maxDepth {
		return r.errorf("nesting deeper than %d", maxDepth)
	}
	for i := 0; i < n; i++ {
		if _, err := r.skipValue(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// clampLen converts a decoded length to int, mapping values that cannot fit
// the data to -1 so that need() rejects them.
func clampLen(u uint64) int {
	if u > math.MaxInt32 {
		return -1
	}
	return int(u)
}

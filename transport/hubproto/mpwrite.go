package hubproto

import (
	"encoding/binary"
	"math"
	"slices"
)

// MessagePack format bytes (see the MessagePack specification).
const (
	mpNil      = 0xc0
	mpFalse    = 0xc2
	mpTrue     = 0xc3
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpExt8     = 0xc7
	mpExt16    = 0xc8
	mpExt32    = 0xc9
	mpFloat32  = 0xca
	mpFloat64  = 0xcb
	mpUint8    = 0xcc
	mpUint16   = 0xcd
	mpUint32   = 0xce
	mpUint64   = 0xcf
	mpInt8     = 0xd0
	mpInt16    = 0xd1
	mpInt32    = 0xd2
	mpInt64    = 0xd3
	mpFixExt1  = 0xd4
	mpFixExt2  = 0xd5
	mpFixExt4  = 0xd6
	mpFixExt8  = 0xd7
	mpFixExt16 = 0xd8
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpMap16    = 0xde
	mpMap32    = 0xdf

	mpFixMap   = 0x80
	mpFixArray = 0x90
	mpFixStr   = 0xa0
)

// mpAppendArrayHeader appends the smallest array header for n elements.
func mpAppendArrayHeader(dst []byte, n int) []byte {
	return mpAppendContainerHeader(dst, n, mpFixArray, mpArray16, mpArray32)
}

// mpAppendMapHeader appends the smallest map header for n entries.
func mpAppendMapHeader(dst []byte, n int) []byte {
	return mpAppendContainerHeader(dst, n, mpFixMap, mpMap16, mpMap32)
}

// mpAppendContainerHeader appends the smallest header of an array or map
// of n items, whose formats are fix (up to 15 items), c16 and c32: the
// writing side of mpReader.containerLen.
func mpAppendContainerHeader(dst []byte, n int, fix, c16, c32 byte) []byte {
	switch {
	case n < 16:
		return append(dst, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, c32), uint32(n))
}

// mpStrHeaderLen returns the size of the str header for an n-byte string.
func mpStrHeaderLen(n int) int {
	switch {
	case n < 32:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

// mpAppendStrHeader appends the smallest str header for n bytes.
func mpAppendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, mpFixStr|byte(n))
	case n <= math.MaxUint8:
		return append(dst, mpStr8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mpStr16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, mpStr32), uint32(n))
}

// mpAppendString appends s as a MessagePack str.
func mpAppendString(dst []byte, s string) []byte {
	return append(mpAppendStrHeader(dst, len(s)), s...)
}

// mpAppendStringOrNil appends s, or nil when s is empty.
func mpAppendStringOrNil(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, mpNil)
	}
	return mpAppendString(dst, s)
}

// mpAppendInt appends n in its smallest integer encoding (non-negative
// values use the unsigned family, as most encoders do).
func mpAppendInt(dst []byte, n int64) []byte {
	if n >= 0 {
		return mpAppendUint(dst, uint64(n))
	}
	switch {
	case n >= -32:
		return append(dst, byte(n))
	case n >= math.MinInt8:
		return append(dst, mpInt8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, mpInt16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, mpInt32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpInt64), uint64(n))
}

// mpAppendUint appends n in its smallest unsigned encoding.
func mpAppendUint(dst []byte, n uint64) []byte {
	switch {
	case n < 128:
		return append(dst, byte(n))
	case n <= math.MaxUint8:
		return append(dst, mpUint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mpUint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mpUint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpUint64), n)
}

// mpAppendFloat64 appends f as a float64.
func mpAppendFloat64(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, mpFloat64), math.Float64bits(f))
}

// mpAppendBool appends true or false.
func mpAppendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, mpTrue)
	}
	return append(dst, mpFalse)
}

// mpAppendStringMap appends a str→str map with its keys sorted, so that the
// encoding is deterministic.
func mpAppendStringMap(dst []byte, m map[string]string) []byte {
	dst = mpAppendMapHeader(dst, len(m))
	if len(m) == 1 {
		for k, v := range m {
			return mpAppendString(mpAppendString(dst, k), v)
		}
	}
	for _, k := range sortedKeys(m) {
		dst = mpAppendString(mpAppendString(dst, k), m[k])
	}
	return dst
}

// sortedKeys returns the keys of m in ascending order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

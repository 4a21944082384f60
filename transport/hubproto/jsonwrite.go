package hubproto

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// replacementChar is U+FFFD in UTF-8. It is written as a character rather
// than as \ufffd so that converting the output again gives the same bytes.
const replacementChar = "\uFFFD"

// appendJSONString appends s as a quoted JSON string (see
// appendJSONBytesString), reading s in place.
func appendJSONString(dst []byte, s string) []byte {
	return appendJSONBytesString(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// appendJSONBytesString appends s as a quoted JSON string. Invalid UTF-8
// is replaced by U+FFFD, so the output is always valid JSON text. Only '"',
// '\\' and control characters are escaped. It only reads s.
func appendJSONBytesString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = appendEscapedByte(append(dst, s[start:i]...), c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(append(dst, s[start:i]...), replacementChar...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(append(dst, s[start:]...), '"')
}

// appendEscapedByte appends the JSON escape for an ASCII byte that needs one.
func appendEscapedByte(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// appendJSONFloat appends f (of the given bit size, 32 or 64) as a JSON
// number using the shortest text that reads back as the same value. NaN and
// infinities have no JSON form and become null, as JSON.stringify does.
// Integral values in plain notation get a ".0" suffix so that a float stays
// a float when the text is converted back to MessagePack.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Shorten e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
		return dst
	}
	for _, c := range dst[start:] {
		if c == '.' {
			return dst
		}
	}
	return append(dst, '.', '0')
}

// appendJSONStringMap appends m as a JSON object with sorted keys.
func appendJSONStringMap(dst []byte, m map[string]string) []byte {
	dst = append(dst, '{')
	if len(m) == 1 {
		for k, v := range m {
			dst = appendJSONString(append(appendJSONString(dst, k), ':'), v)
		}
		return append(dst, '}')
	}
	for i, k := range sortedKeys(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(append(appendJSONString(dst, k), ':'), m[k])
	}
	return append(dst, '}')
}

// appendJSONStringArray appends ss as a JSON array of strings.
func appendJSONStringArray(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

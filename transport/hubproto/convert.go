package hubproto

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"time"
)

// JSONToMsgpack appends the MessagePack form of the single JSON value in src
// to dst. Objects become maps, arrays become arrays, strings are unescaped,
// integer literals become integers when they fit an int64 (or a uint64) and
// float64 otherwise, numbers with a fraction or exponent become float64, and
// true, false and null map directly. Whitespace around the value is allowed.
// On error (ErrMalformed) dst is returned unchanged.
func JSONToMsgpack(dst, src []byte) ([]byte, error) {
	s := jsonScanner{buf: src}
	out, err := s.toMsgpack(dst, 0)
	if err != nil {
		return dst, err
	}
	if s.skipWS(); s.pos != len(src) {
		return dst, s.errorf("data after the value")
	}
	return out, nil
}

// toMsgpack converts one JSON value at the scanner position.
func (s *jsonScanner) toMsgpack(dst []byte, depth int) ([]byte, error) {
	var err error
	switch c := s.peek(); {
	case c == '"':
		content, escaped, err := s.readString()
		if err != nil {
			return dst, err
		}
		return mpAppendJSONString(dst, content, escaped), nil
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return dst, s.errorf("nesting deeper than %d", maxDepth)
		}
		s.pos++
		closing, fix, c16 := byte(']'), byte(mpFixArray), byte(mpArray16)
		if c == '{' {
			closing, fix, c16 = '}', mpFixMap, mpMap16
		}
		hdr := len(dst)
		dst = append(dst, fix) // patched below once the count is known
		n := 0
		if s.peek() == closing {
			s.pos++
			return dst, nil
		}
		for more := true; more; n++ {
			if c == '{' {
				content, escaped, err := s.readString()
				if err != nil {
					return dst, err
				}
				dst = mpAppendJSONString(dst, content, escaped)
				if err := s.expect(':'); err != nil {
					return dst, err
				}
			}
			if dst, err = s.toMsgpack(dst, depth+1); err != nil {
				return dst, err
			}
			if more, err = s.next(closing); err != nil {
				return dst, err
			}
		}
		return mpPatchHeader(dst, hdr, n, fix, c16), nil
	case c == '-' || (c >= '0' && c <= '9'):
		text, isInt, err := s.readNumber()
		if err != nil {
			return dst, err
		}
		return mpAppendJSONNumber(dst, text, isInt), nil
	case c == 't':
		_, err = s.literal("true")
		return append(dst, mpTrue), err
	case c == 'f':
		_, err = s.literal("false")
		return append(dst, mpFalse), err
	case c == 'n':
		_, err = s.literal("null")
		return append(dst, mpNil), err
	}
	_, err = s.skipValue(depth) // produces the right error message
	return dst, err
}

// mpPatchHeader writes the header for an n-element container whose content
// starts at hdr+1, where one byte was reserved. Containers of 16 or more
// elements need a 3- or 5-byte header, so the content is moved up.
func mpPatchHeader(dst []byte, hdr, n int, fix, c16 byte) []byte {
	if n < 16 {
		dst[hdr] = fix | byte(n)
		return dst
	}
	size := 3
	if n > math.MaxUint16 {
		size = 5
	}
	end := len(dst)
	for range size - 1 {
		dst = append(dst, 0)
	}
	copy(dst[hdr+size:], dst[hdr+1:end])
	if size == 3 {
		dst[hdr] = c16
		binary.BigEndian.PutUint16(dst[hdr+1:], uint16(n))
	} else {
		dst[hdr] = c16 + 1 // array32 / map32 follow array16 / map16
		binary.BigEndian.PutUint32(dst[hdr+1:], uint32(n))
	}
	return dst
}

// mpAppendJSONString appends validated JSON string content as a str.
func mpAppendJSONString(dst, content []byte, escaped bool) []byte {
	if !escaped {
		return append(mpAppendStrHeader(dst, len(content)), content...)
	}
	// The decoded text is never longer than the escaped text: reserve a
	// header for the escaped length and shrink it if the text got shorter.
	start := len(dst)
	h := mpStrHeaderLen(len(content))
	dst = appendUnescaped(append(dst, 0, 0, 0, 0, 0)[:start+h], content)
	n := len(dst) - start - h
	if h2 := mpStrHeaderLen(n); h2 != h {
		copy(dst[start+h2:], dst[start+h:])
		dst = dst[:start+h2+n]
	}
	mpAppendStrHeader(dst[start:start], n) // fits in place
	return dst
}

// mpAppendJSONNumber appends a validated JSON number.
func mpAppendJSONNumber(dst, text []byte, isInt bool) []byte {
	if isInt {
		neg := text[0] == '-'
		digits := text
		if neg {
			digits = text[1:]
		}
		if u, ok := parseDigits(digits); ok {
			switch {
			case !neg:
				return mpAppendUint(dst, u)
			case u <= 1<<63:
				return mpAppendInt(dst, int64(-u))
			}
		}
	}
	f, _ := strconv.ParseFloat(string(text), 64) // ±Inf on overflow, like JSON.parse
	return mpAppendFloat64(dst, f)
}

// parseDigits parses decimal digits into a uint64, reporting overflow.
func parseDigits(digits []byte) (uint64, bool) {
	if len(digits) > 20 {
		return 0, false
	}
	var u uint64
	for _, c := range digits {
		d := uint64(c - '0')
		if u > (math.MaxUint64-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	return u, true
}

// MsgpackToJSON appends the JSON form of the single MessagePack value in src
// to dst. Maps become objects whose keys are converted to strings (numbers,
// booleans and nil by their JSON text), bin becomes a base64 string (as
// System.Text.Json writes byte[]), the timestamp extension becomes an RFC
// 3339 string in UTC, NaN and infinities become null, and invalid UTF-8 in
// strings becomes U+FFFD. Other extension types and array or map keys fail
// with ErrUnsupportedValue; bad input fails with ErrMalformed. On error dst
// is returned unchanged.
func MsgpackToJSON(dst, src []byte) ([]byte, error) {
	return convertToJSON(dst, src, false)
}

// convertToJSON converts the one MessagePack value in src; jsonForm picks
// MsgpackToJSONForm's rules. On error dst is returned unchanged.
func convertToJSON(dst, src []byte, jsonForm bool) ([]byte, error) {
	r := mpReader{buf: src, jsonForm: jsonForm}
	out, err := r.toJSON(dst, 0)
	if err != nil {
		return dst, err
	}
	if r.pos != len(src) {
		return dst, r.errorf("data after the value")
	}
	return out, nil
}

// toJSON converts one MessagePack value at the reader position.
func (r *mpReader) toJSON(dst []byte, depth int) ([]byte, error) {
	c, err := r.peek()
	if err != nil {
		return dst, err
	}
	switch {
	case c <= 0x7f:
		r.pos++
		return strconv.AppendUint(dst, uint64(c), 10), nil
	case c >= 0xe0:
		r.pos++
		return strconv.AppendInt(dst, int64(int8(c)), 10), nil
	case c == mpNil:
		r.pos++
		return append(dst, "null"...), nil
	case c == mpTrue:
		r.pos++
		return append(dst, "true"...), nil
	case c == mpFalse:
		r.pos++
		return append(dst, "false"...), nil
	case c&0xe0 == mpFixStr || c == mpStr8 || c == mpStr16 || c == mpStr32:
		n, _, err := r.strLen()
		if err != nil {
			return dst, err
		}
		dst = appendJSONBytesString(dst, r.buf[r.pos:r.pos+n])
		r.pos += n
		return dst, nil
	case c >= mpBin8 && c <= mpBin32:
		r.pos++
		u, err := r.uintN(1 << (c - mpBin8))
		if err != nil {
			return dst, err
		}
		n := clampLen(u)
		if err := r.need(n); err != nil {
			return dst, err
		}
		dst = base64.StdEncoding.AppendEncode(append(dst, '"'), r.buf[r.pos:r.pos+n])
		r.pos += n
		return append(dst, '"'), nil
	case c&0xf0 == mpFixArray || c == mpArray16 || c == mpArray32:
		n, err := r.readArrayLen()
		if err != nil {
			return dst, err
		}
		if depth >= maxDepth {
			return dst, r.errorf("nesting deeper than %d", maxDepth)
		}
		dst = append(dst, '[')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = r.toJSON(dst, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case c&0xf0 == mpFixMap || c == mpMap16 || c == mpMap32:
		n, err := r.readMapLen()
		if err != nil {
			return dst, err
		}
		if depth >= maxDepth {
			return dst, r.errorf("nesting deeper than %d", maxDepth)
		}
		dst = append(dst, '{')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = r.keyToJSON(dst, depth+1); err != nil {
				return dst, err
			}
			if dst, err = r.toJSON(append(dst, ':'), depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case c == mpFloat32:
		r.pos++
		u, err := r.uintN(4)
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, float64(math.Float32frombits(uint32(u))), 32), nil
	case c == mpFloat64:
		r.pos++
		u, err := r.uintN(8)
		if err != nil {
			return dst, err
		}
		return appendJSONFloat(dst, math.Float64frombits(u), 64), nil
	case c >= mpUint8 && c <= mpUint64:
		r.pos++
		u, err := r.uintN(1 << (c - mpUint8))
		if err != nil {
			return dst, err
		}
		return strconv.AppendUint(dst, u, 10), nil
	case c >= mpInt8 && c <= mpInt64:
		n, err := r.readInt64("integer")
		if err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, n, 10), nil
	case c >= mpExt8 && c <= mpExt32 || c >= mpFixExt1 && c <= mpFixExt16:
		return r.extToJSON(dst)
	}
	return dst, r.errorf("invalid format byte 0x%02x", c)
}

// keyToJSON converts a map key to a JSON string.
func (r *mpReader) keyToJSON(dst []byte, depth int) ([]byte, error) {
	c, err := r.peek()
	if err != nil {
		return dst, err
	}
	isExt := c >= mpExt8 && c <= mpExt32 || c >= mpFixExt1 && c <= mpFixExt16
	switch {
	case c&0xe0 == mpFixStr || c == mpStr8 || c == mpStr16 || c == mpStr32,
		c >= mpBin8 && c <= mpBin32,
		isExt && !r.jsonForm:
		return r.toJSON(dst, maxDepth) // a string in JSON already
	case isExt, c&0xf0 == mpFixArray || c == mpArray16 || c == mpArray32,
		c&0xf0 == mpFixMap || c == mpMap16 || c == mpMap32:
		if !r.jsonForm {
			return dst, errorf(ErrUnsupportedValue, "messagepack offset %d: map key is an array or a map", r.pos)
		}
		return r.compoundKeyToJSON(dst, depth)
	}
	// Numbers, booleans and nil: their JSON text in quotes (never needs
	// escaping).
	dst, err = r.toJSON(append(dst, '"'), maxDepth)
	if err != nil {
		return dst, err
	}
	return append(dst, '"'), nil
}

// extTimestamp is the MessagePack extension type of timestamps.
const extTimestamp = -1

// extToJSON converts an extension value; only timestamps are supported.
func (r *mpReader) extToJSON(dst []byte) ([]byte, error) {
	at := r.pos
	raw, err := r.skipValue(0)
	if err != nil {
		return dst, err
	}
	// Locate the type byte and data: fixext has them right after the
	// format byte, ext8/16/32 after a 1/2/4-byte length.
	off := 1
	if c := raw[0]; c >= mpExt8 && c <= mpExt32 {
		off += 1 << (c - mpExt8)
	}
	typ, data := int8(raw[off]), raw[off+1:]
	if r.jsonForm && (typ != extTimestamp || !validTimestamp(data)) {
		return appendExtObject(dst, typ, data), nil
	}
	if typ != extTimestamp {
		return dst, errorf(ErrUnsupportedValue, "messagepack offset %d: extension type %d has no JSON form", at, typ)
	}
	var sec int64
	var nsec uint32
	switch len(data) {
	case 4:
		sec = int64(binary.BigEndian.Uint32(data))
	case 8:
		v := binary.BigEndian.Uint64(data)
		nsec, sec = uint32(v>>34), int64(v&(1<<34-1))
	case 12:
		nsec, sec = binary.BigEndian.Uint32(data), int64(binary.BigEndian.Uint64(data[4:]))
	default:
		return dst, errorf(ErrUnsupportedValue, "messagepack offset %d: timestamp of %d bytes", at, len(data))
	}
	if nsec > 999_999_999 {
		return dst, errorf(ErrUnsupportedValue, "messagepack offset %d: timestamp nanoseconds %d out of range", at, nsec)
	}
	dst = time.Unix(sec, int64(nsec)).UTC().AppendFormat(append(dst, '"'), time.RFC3339Nano)
	return append(dst, '"'), nil
}

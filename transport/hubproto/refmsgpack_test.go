package hubproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"time"
)

// A deliberately naive MessagePack reference decoder and encoder, written
// independently of mpread.go/mpwrite.go (io.Reader and encoding/binary, no
// shared helpers), used as an oracle by the conversion tests.

// refDecode decodes exactly one value from b. Integers come back as int64
// (uint64 above MaxInt64), floats as float64, bin as []byte, maps as
// map[string]any (string keys only) and timestamps as time.Time.
func refDecode(b []byte) (any, error) {
	r := bytes.NewReader(b)
	v, err := refValue(r)
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, errors.New("ref: trailing bytes")
	}
	return v, nil
}

func refValue(r *bytes.Reader) (any, error) {
	c, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c>>4 == 0x8:
		return refMap(r, int(c&0x0f))
	case c>>4 == 0x9:
		return refArray(r, int(c&0x0f))
	case c>>5 == 0x5:
		return refBytes(r, int(c&0x1f), true)
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		return refBytes(r, refUint(r, 1<<(c-0xc4)), false)
	case 0xca:
		var f float32
		err := binary.Read(r, binary.BigEndian, &f)
		return float64(f), err
	case 0xcb:
		var f float64
		err := binary.Read(r, binary.BigEndian, &f)
		return f, err
	case 0xcc, 0xcd, 0xce, 0xcf:
		var u uint64
		switch c {
		case 0xcc:
			var x uint8
			err = binary.Read(r, binary.BigEndian, &x)
			u = uint64(x)
		case 0xcd:
			var x uint16
			err = binary.Read(r, binary.BigEndian, &x)
			u = uint64(x)
		case 0xce:
			var x uint32
			err = binary.Read(r, binary.BigEndian, &x)
			u = uint64(x)
		default:
			err = binary.Read(r, binary.BigEndian, &u)
		}
		if u > math.MaxInt64 {
			return u, err
		}
		return int64(u), err
	case 0xd0:
		var x int8
		err := binary.Read(r, binary.BigEndian, &x)
		return int64(x), err
	case 0xd1:
		var x int16
		err := binary.Read(r, binary.BigEndian, &x)
		return int64(x), err
	case 0xd2:
		var x int32
		err := binary.Read(r, binary.BigEndian, &x)
		return int64(x), err
	case 0xd3:
		var x int64
		err := binary.Read(r, binary.BigEndian, &x)
		return x, err
	case 0xd9, 0xda, 0xdb:
		return refBytes(r, refUint(r, 1<<(c-0xd9)), true)
	case 0xdc, 0xdd:
		return refArray(r, refUint(r, 2<<(c-0xdc)))
	case 0xde, 0xdf:
		return refMap(r, refUint(r, 2<<(c-0xde)))
	}
	return nil, fmt.Errorf("ref: unsupported format 0x%02x", c)
}

func refUint(r *bytes.Reader, size int) int {
	buf := make([]byte, 8)
	if _, err := io.ReadFull(r, buf[8-size:]); err != nil {
		return -1
	}
	return int(binary.BigEndian.Uint64(buf))
}

func refBytes(r *bytes.Reader, n int, str bool) (any, error) {
	if n < 0 || n > r.Len() {
		return nil, errors.New("ref: short data")
	}
	b := make([]byte, n)
	_, _ = io.ReadFull(r, b)
	if str {
		return string(b), nil
	}
	return b, nil
}

func refArray(r *bytes.Reader, n int) (any, error) {
	if n < 0 || n > r.Len() {
		return nil, errors.New("ref: bad array length")
	}
	out := make([]any, n)
	for i := range out {
		v, err := refValue(r)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func refMap(r *bytes.Reader, n int) (any, error) {
	if n < 0 || n > r.Len() {
		return nil, errors.New("ref: bad map length")
	}
	out := make(map[string]any, n)
	for range n {
		k, err := refValue(r)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("ref: map key %T", k)
		}
		if out[ks], err = refValue(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// refEncode encodes v, which may hold nil, bool, int64, uint64, float32,
// float64, string, []byte, time.Time, []any and map[string]any, always
// using the widest fixed-size formats (legal, if not compact) so that the
// converter sees encodings other than its own.
func refEncode(v any) []byte {
	var b bytes.Buffer
	refPut(&b, v)
	return b.Bytes()
}

func refPut(b *bytes.Buffer, v any) {
	w := func(x any) { _ = binary.Write(b, binary.BigEndian, x) }
	switch x := v.(type) {
	case nil:
		b.WriteByte(0xc0)
	case bool:
		if x {
			b.WriteByte(0xc3)
		} else {
			b.WriteByte(0xc2)
		}
	case int64:
		b.WriteByte(0xd3)
		w(x)
	case uint64:
		b.WriteByte(0xcf)
		w(x)
	case float32:
		b.WriteByte(0xca)
		w(x)
	case float64:
		b.WriteByte(0xcb)
		w(x)
	case string:
		b.WriteByte(0xdb)
		w(uint32(len(x)))
		b.WriteString(x)
	case []byte:
		b.WriteByte(0xc6)
		w(uint32(len(x)))
		b.Write(x)
	case time.Time:
		b.Write([]byte{0xc7, 12, 0xff})
		w(uint32(x.Nanosecond()))
		w(x.Unix())
	case []any:
		b.WriteByte(0xdd)
		w(uint32(len(x)))
		for _, e := range x {
			refPut(b, e)
		}
	case map[string]any:
		b.WriteByte(0xdf)
		w(uint32(len(x)))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			refPut(b, k)
			refPut(b, x[k])
		}
	default:
		panic(fmt.Sprintf("refEncode: unsupported %T", v))
	}
}

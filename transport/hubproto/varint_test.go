package hubproto

import (
	"bytes"
	"errors"
	"testing"
)

func TestVarintGolden(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, "00"},
		{1, "01"},
		{127, "7f"},
		{128, "80 01"},
		{300, "ac 02"},
		{16383, "ff 7f"},
		{16384, "80 80 01"},
		{1<<21 - 1, "ff ff 7f"},
		{1 << 21, "80 80 80 01"},
		{1<<28 - 1, "ff ff ff 7f"},
		{1 << 28, "80 80 80 80 01"},
		{maxBodyLen, "ff ff ff ff 07"},
	}
	for _, tt := range tests {
		want := unhex(t, tt.want)
		got := appendVarint(nil, tt.n)
		if !bytes.Equal(got, want) {
			t.Errorf("appendVarint(%d) = % x, want % x", tt.n, got, want)
		}
		if l := varintLen(tt.n); l != len(want) {
			t.Errorf("varintLen(%d) = %d, want %d", tt.n, l, len(want))
		}
		put := make([]byte, len(want))
		putVarint(put, tt.n)
		if !bytes.Equal(put, want) {
			t.Errorf("putVarint(%d) = % x, want % x", tt.n, put, want)
		}
		n, size, err := readVarint(append(want, 0xaa))
		if err != nil || n != tt.n || size != len(want) {
			t.Errorf("readVarint(% x) = %d, %d, %v; want %d, %d", want, n, size, err, tt.n, len(want))
		}
		// Every strict prefix is incomplete, not an error.
		for i := 0; i < len(want); i++ {
			if _, size, err := readVarint(want[:i]); size != 0 || err != nil {
				t.Errorf("readVarint(% x) = size %d, %v; want incomplete", want[:i], size, err)
			}
		}
	}
}

func TestVarintInvalid(t *testing.T) {
	for _, in := range []string{"80 80 80 80 08", "ff ff ff ff 0f", "ff ff ff ff ff", "80 80 80 80 80 01"} {
		if _, _, err := readVarint(unhex(t, in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("readVarint(%s) err = %v, want ErrMalformed", in, err)
		}
	}
}

package hubproto

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects (JSON) or arrays and
// maps (MessagePack) that the scanners and converters accept.
const maxDepth = 256

// jsonScanner is a small validating JSON tokenizer over one record. It never
// allocates; callers decode strings only when they need them.
type jsonScanner struct {
	buf []byte
	pos int
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return errorf(ErrMalformed, "json offset %d: "+format, append([]any{s.pos}, args...)...)
}

// skipWS advances past JSON whitespace.
func (s *jsonScanner) skipWS() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-whitespace byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.skipWS()
	if s.pos >= len(s.buf) {
		return 0
	}
	return s.buf[s.pos]
}

// expect consumes the byte c after optional whitespace.
func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.buf) {
			return s.errorf("unexpected end, want %q", c)
		}
		return s.errorf("unexpected %q, want %q", s.buf[s.pos], c)
	}
	s.pos++
	return nil
}

// skipValue validates and skips one JSON value, returning its raw bytes.
func (s *jsonScanner) skipValue(depth int) ([]byte, error) {
	c := s.peek()
	start := s.pos
	switch {
	case c == '"':
		if _, _, err := s.readString(); err != nil {
			return nil, err
		}
	case c == '{':
		if depth >= maxDepth {
			return nil, s.errorf("nesting deeper than %d", maxDepth)
		}
		s.pos++
		if s.peek() == '}' {
			s.pos++
			break
		}
		for {
			if s.peek() != '"' {
				return nil, s.errorf("want object key")
			}
			if _, _, err := s.readString(); err != nil {
				return nil, err
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			if _, err := s.skipValue(depth + 1); err != nil {
				return nil, err
			}
			if more, err := s.next('}'); err != nil || !more {
				if err != nil {
					return nil, err
				}
				break
			}
		}
	case c == '[':
		if depth >= maxDepth {
			return nil, s.errorf("nesting deeper than %d", maxDepth)
		}
		s.pos++
		if s.peek() == ']' {
			s.pos++
			break
		}
		for {
			if _, err := s.skipValue(depth + 1); err != nil {
				return nil, err
			}
			if more, err := s.next(']'); err != nil || !more {
				if err != nil {
					return nil, err
				}
				break
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if _, _, err := s.readNumber(); err != nil {
			return nil, err
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == 0 && s.pos >= len(s.buf):
		return nil, s.errorf("unexpected end, want a value")
	default:
		return nil, s.errorf("unexpected %q, want a value", c)
	}
	return s.buf[start:s.pos], nil
}

// next is called after a member or element: it consumes ',' (more=true) or
// the closing byte (more=false).
func (s *jsonScanner) next(closing byte) (more bool, err error) {
	switch s.peek() {
	case ',':
		s.pos++
		return true, nil
	case closing:
		s.pos++
		return false, nil
	}
	if s.pos >= len(s.buf) {
		return false, s.errorf("unexpected end, want ',' or %q", closing)
	}
	return false, s.errorf("unexpected %q, want ',' or %q", s.buf[s.pos], closing)
}

// literal consumes the literal word (true, false, null).
func (s *jsonScanner) literal(word string) ([]byte, error) {
	end := s.pos + len(word)
	if end > len(s.buf) || string(s.buf[s.pos:end]) != word {
		return nil, s.errorf("invalid literal, want %s", word)
	}
	start := s.pos
	s.pos = end
	return s.buf[start:end], nil
}

// isNull reports (and consumes) a null literal at the current position.
func (s *jsonScanner) isNull() bool {
	if s.peek() == 'n' && len(s.buf)-s.pos >= 4 && string(s.buf[s.pos:s.pos+4]) == "null" {
		s.pos += 4
		return true
	}
	return false
}

// readString validates a string starting at the opening quote and returns
// its content without the quotes (still escaped) and whether it contains
// escapes. Invalid UTF-8 and raw control characters are rejected.
func (s *jsonScanner) readString() (content []byte, escaped bool, err error) {
	if s.peek() != '"' {
		return nil, false, s.errorf("want a string")
	}
	s.pos++
	start := s.pos
	b := s.buf
	for i := s.pos; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return b[start:i], escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				s.pos = i
				return nil, false, s.errorf("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					s.pos = i
					return nil, false, s.errorf("invalid \\u escape")
				}
				i += 6
			default:
				s.pos = i
				return nil, false, s.errorf("invalid escape \\%c", b[i+1])
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.errorf("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				s.pos = i
				return nil, false, s.errorf("invalid UTF-8 in string")
			}
			i += size
		}
	}
	s.pos = len(b)
	return nil, false, s.errorf("unterminated string")
}

// readStringValue reads a string and returns it decoded.
func (s *jsonScanner) readStringValue() (string, error) {
	content, escaped, err := s.readString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(content), nil
	}
	return string(appendUnescaped(make([]byte, 0, len(content)), content)), nil
}

// readNumber validates a number and returns its text and whether it is an
// integer literal (no fraction and no exponent).
func (s *jsonScanner) readNumber() (text []byte, isInt bool, err error) {
	b := s.buf
	start := s.pos
	i := s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, false, s.errorf("invalid number")
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.pos = i
			return nil, false, s.errorf("invalid number fraction")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.pos = i
			return nil, false, s.errorf("invalid number exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.pos = i
	return b[start:i], isInt, nil
}

// readInt64 reads an integer literal that fits in an int64.
func (s *jsonScanner) readInt64() (int64, error) {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, s.errorf("want an integer")
	}
	text, isInt, err := s.readNumber()
	if err != nil {
		return 0, err
	}
	if !isInt {
		return 0, s.errorf("want an integer, got %s", text)
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return 0, s.errorf("integer %s out of range", text)
	}
	return n, nil
}

// readBool reads true or false.
func (s *jsonScanner) readBool() (bool, error) {
	switch s.peek() {
	case 't':
		_, err := s.literal("true")
		return true, err
	case 'f':
		_, err := s.literal("false")
		return false, err
	}
	return false, s.errorf("want a boolean")
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func hex4(b []byte) rune {
	return rune(hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3]))
}

// appendUnescaped appends the decoded form of validated string content (as
// returned by readString). Unpaired surrogates become U+FFFD.
func appendUnescaped(dst, content []byte) []byte {
	for i := 0; i < len(content); {
		c := content[i]
		if c != '\\' {
			j := i + 1
			for j < len(content) && content[j] != '\\' {
				j++
			}
			dst = append(dst, content[i:j]...)
			i = j
			continue
		}
		switch content[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(content[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(content) && content[i] == '\\' && content[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(content[i+2:]))
					if r2 != utf8.RuneError {
						i += 6
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, content[i+1])
		}
		i += 2
	}
	return dst
}

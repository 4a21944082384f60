package hubproto

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
)

// The JSON form of MessagePack values.
//
// Backplane keeps a MessagePack client's arguments as they were sent, so
// MessagePack recipients get them byte for byte; JSON recipients get the
// JSON form below, which exists for every well-formed value:
//
//   - bin: a base64 string (as ASP.NET's JSON protocol writes byte[]);
//   - the timestamp extension (type -1): an RFC 3339 string in UTC with
//     up to nanosecond precision, e.g. "2024-05-01T12:00:00.5Z";
//   - any other extension, and a timestamp of invalid length or
//     nanoseconds: {"type":<type>,"data":"<base64 of the data>"};
//   - NaN, Infinity and -Infinity: null (JSON has no literal for them; this
//     is what JSON.stringify writes);
//   - map keys: strings as they are; numbers, booleans and nil as their
//     JSON text ("1", "true", "null"); bin and extensions as the string of
//     their JSON form; array and map keys as their compact JSON text;
//   - strings with invalid UTF-8: U+FFFD for each bad byte.

// MsgpackToJSONForm appends the JSON form (described above) of the single
// MessagePack value in src to dst. Only malformed input fails (with
// ErrMalformed, including nesting deeper than 256); on error dst is
// returned unchanged.
func MsgpackToJSONForm(dst, src []byte) ([]byte, error) {
	return convertToJSON(dst, src, true)
}

// ValidateMsgpackArray checks that b holds exactly one well-formed
// MessagePack array (nested at most 256 deep), as a publish stores the
// arguments of a MessagePack client. The error wraps ErrMalformed.
func ValidateMsgpackArray(b []byte) error {
	r := mpReader{buf: b}
	c, err := r.peek()
	if err != nil {
		return err
	}
	if c&0xf0 != mpFixArray && c != mpArray16 && c != mpArray32 {
		return r.errorf("want an array, got format 0x%02x", c)
	}
	if _, err := r.skipValue(0); err != nil {
		return err
	}
	if r.pos != len(b) {
		return r.errorf("data after the array")
	}
	return nil
}

// AppendMsgpackArray appends a MessagePack array of the values' data to
// dst, as they are (each must be one MessagePack value).
func AppendMsgpackArray(dst []byte, vals []RawValue) []byte {
	dst = mpAppendArrayHeader(dst, len(vals))
	for _, v := range vals {
		if len(v.Data) == 0 {
			dst = append(dst, mpNil)
			continue
		}
		dst = append(dst, v.Data...)
	}
	return dst
}

// AppendInvocationMsgpackArgs is AppendInvocationMsgpack with the
// arguments already a MessagePack array (argsMsgpack, copied verbatim
// and not validated: see ValidateMsgpackArray).
func AppendInvocationMsgpackArgs(dst []byte, target string, argsMsgpack []byte) ([]byte, error) {
	dst, start, pre := appendInvocationMsgpackHead(dst, target, len(argsMsgpack))
	return appendInvocationMsgpackTail(append(dst, argsMsgpack...), start, pre)
}

// AppendInvocationArgs appends the fire-and-forget Invocation of target
// for protocol p, from the arguments as stored: argsJSON (a JSON array)
// and, when the sender used MessagePack, argsMsgpack (its MessagePack
// array, preferred for MessagePack recipients so they get what was sent).
func AppendInvocationArgs(p Protocol, dst []byte, target string, argsJSON, argsMsgpack []byte) ([]byte, error) {
	if p.TransferFormat() == TransferFormatText {
		return AppendInvocationJSON(dst, target, argsJSON), nil
	}
	if len(argsMsgpack) > 0 {
		return AppendInvocationMsgpackArgs(dst, target, argsMsgpack)
	}
	return AppendInvocationMsgpack(dst, target, argsJSON)
}

// compoundKeyToJSON writes a map key that is an array, a map or an
// extension as a JSON string holding its JSON form (a timestamp is a
// string already).
func (r *mpReader) compoundKeyToJSON(dst []byte, depth int) ([]byte, error) {
	text, err := r.toJSON(nil, depth)
	if err != nil {
		return dst, err
	}
	if text[0] == '"' { // a timestamp: a string already
		return append(dst, text...), nil
	}
	return appendJSONBytesString(dst, text), nil
}

// validTimestamp reports whether data is the payload of a timestamp the
// JSON form writes as a date.
func validTimestamp(data []byte) bool {
	switch len(data) {
	case 4:
		return true
	case 8:
		return binary.BigEndian.Uint64(data)>>34 <= 999_999_999
	case 12:
		return binary.BigEndian.Uint32(data) <= 999_999_999
	}
	return false
}

// appendExtObject writes an extension value as {"type":N,"data":"base64"}.
func appendExtObject(dst []byte, typ int8, data []byte) []byte {
	dst = strconv.AppendInt(append(dst, `{"type":`...), int64(typ), 10)
	dst = base64.StdEncoding.AppendEncode(append(dst, `,"data":"`...), data)
	return append(dst, `"}`...)
}

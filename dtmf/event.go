package dtmf

// PayloadSize is the size in bytes of one RFC 4733 event payload.
const PayloadSize = 4

// MaxVolume is the largest volume that fits the 6-bit field (-63 dBm0).
const MaxVolume = 63

// Event is one RFC 4733 telephone-event payload (4 bytes), see
// https://www.rfc-editor.org/rfc/rfc4733#section-2.3.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Event struct {
	Code     uint8  // event code; 0-15 are the DTMF digits (0-9, 10='*', 11='#', 12-15='A'-'D')
	End      bool   // E bit: this is (a retransmission of) the final packet of the event
	Volume   uint8  // power level in -dBm0, 0-63 (0 is loudest)
	Duration uint16 // duration so far, in RTP timestamp units
}

// Unmarshal decodes the first 4 bytes of payload into e. Bytes after the
// first event (further events of a multi-event packet) are ignored, and so is
// the reserved bit. It does not allocate; it returns [ErrShortPayload], not
// wrapped, when payload has fewer than 4 bytes.
func (e *Event) Unmarshal(payload []byte) error {
	if len(payload) < PayloadSize {
		return ErrShortPayload
	}
	e.Code = payload[0]
	e.End = payload[1]&0x80 != 0
	e.Volume = payload[1] & 0x3f
	e.Duration = uint16(payload[2])<<8 | uint16(payload[3])
	return nil
}

// MarshalTo writes the 4-byte payload of e into buf and returns the number of
// bytes written (4). The reserved bit is written as zero. It does not
// allocate; it returns [ErrShortBuffer] when buf is shorter than 4 bytes and
// [ErrInvalidVolume] when Volume exceeds 63, both not wrapped.
func (e Event) MarshalTo(buf []byte) (int, error) {
	if len(buf) < PayloadSize {
		return 0, ErrShortBuffer
	}
	if e.Volume > MaxVolume {
		return 0, ErrInvalidVolume
	}
	buf[0] = e.Code
	buf[1] = e.Volume
	if e.End {
		buf[1] |= 0x80
	}
	buf[2] = byte(e.Duration >> 8)
	buf[3] = byte(e.Duration)
	return PayloadSize, nil
}

// digits maps DTMF event codes 0-15 to their keys.
const digits = "0123456789*#ABCD"

// Digit returns the key of a DTMF event code: '0'-'9' for 0-9, '*' for 10,
// '#' for 11 and 'A'-'D' for 12-15. ok is false for any other code (other
// telephone events such as flash).
func Digit(code uint8) (digit rune, ok bool) {
	if int(code) >= len(digits) {
		return 0, false
	}
	return rune(digits[code]), true
}

// Code returns the event code of a DTMF key, the inverse of [Digit]. It also
// accepts 'a'-'d'. ok is false for any other rune.
func Code(digit rune) (code uint8, ok bool) {
	switch {
	case digit >= '0' && digit <= '9':
		return uint8(digit - '0'), true
	case digit == '*':
		return 10, true
	case digit == '#':
		return 11, true
	case digit >= 'A' && digit <= 'D':
		return uint8(digit-'A') + 12, true
	case digit >= 'a' && digit <= 'd':
		return uint8(digit-'a') + 12, true
	}
	return 0, false
}

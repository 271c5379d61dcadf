package dtmf

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzEventUnmarshal(f *testing.F) {
	for _, s := range []string{"", "\x01", "\x01\x0a\x01", "\x01\x0a\x01\x40", "\x01\x8a\x08\xc0", "\x0b\x4a\x00\xa0",
		"\xff\xff\xff\xff", "\x02\x0a\x01\x40\x03\x0a\x00\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Event
		err := e.Unmarshal(data)
		if len(data) < PayloadSize {
			if !errors.Is(err, ErrShortPayload) {
				t.Fatalf("Unmarshal(%x) = %v, want ErrShortPayload", data, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Unmarshal(%x): %v", data, err)
		}
		var buf [PayloadSize]byte
		if _, err := e.MarshalTo(buf[:]); err != nil {
			t.Fatalf("MarshalTo(%+v): %v", e, err)
		}
		want := [PayloadSize]byte(data[:PayloadSize])
		want[1] &^= 0x40 // the reserved bit is not kept
		if buf != want {
			t.Fatalf("round trip of %x gave %x", data[:PayloadSize], buf)
		}
		var d Detector
		digit, ok := d.Feed(1, 2, data)
		if ok != (e.Code < 16) {
			t.Fatalf("Feed(%x) = %q, %v for code %d", data, digit, ok, e.Code)
		}
		if _, ok := d.Feed(1, 2, data); ok {
			t.Fatalf("Feed(%x) fired twice", data)
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	for _, s := range [][2]string{
		{"application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"},
		{"application/dtmf-relay", "signal= #\nduration=250"},
		{"application/dtmf-relay", "Signal=11"},
		{"application/dtmf-relay", "Duration=160"},
		{"Application/DTMF-Relay; charset=x", "Signal: a"},
		{"application/dtmf", "5"},
		{"application/dtmf", " *\r\n"},
		{"application/dtmf", ""},
		{"text/plain", "5"},
		{"", ""},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		digit, err := ParseInfo(contentType, body)
		if err != nil {
			if digit != 0 {
				t.Fatalf("ParseInfo(%q, %q) = %q with error %v", contentType, body, digit, err)
			}
			if !errors.Is(err, ErrUnsupportedContentType) && !errors.Is(err, ErrNoSignal) && !errors.Is(err, ErrInvalidDigit) {
				t.Fatalf("ParseInfo(%q, %q): error %v wraps no sentinel", contentType, body, err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("ParseInfo(%q, %q): error of %d bytes", contentType, body, len(err.Error()))
			}
			return
		}
		if !bytes.ContainsRune([]byte("0123456789*#ABCD"), digit) {
			t.Fatalf("ParseInfo(%q, %q) = %q, not a canonical digit", contentType, body, digit)
		}
	})
}

// FuzzDetector feeds arbitrary packet sequences: 9 bytes each, a 1-byte SSRC,
// a 4-byte timestamp and the payload. A digit never fires for a packet with
// the same key as the packet before it, and never more often than there are
// distinct events.
func FuzzDetector(f *testing.F) {
	f.Add([]byte("\x01\x00\x00\x03\xe8\x01\x0a\x00\x00\x01\x00\x00\x03\xe8\x01\x8a\x03\x20\x01\x00\x00\x03\xe8\x01\x8a\x03\x20"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Detector
		type key struct {
			ssrc, ts uint32
			code     uint8
		}
		distinct := map[key]bool{}
		var prev key
		fired := 0
		for i := 0; i+9 <= len(data); i += 9 {
			p := data[i : i+9]
			k := key{uint32(p[0]), uint32(p[1])<<24 | uint32(p[2])<<16 | uint32(p[3])<<8 | uint32(p[4]), p[5]}
			digit, ok := d.Feed(k.ssrc, k.ts, p[5:])
			if ok {
				fired++
				if i > 0 && k == prev {
					t.Fatalf("packet %d fired %q again for the same event", i/9, digit)
				}
				if want, _ := Digit(k.code); digit != want {
					t.Fatalf("packet %d fired %q for code %d", i/9, digit, k.code)
				}
			}
			distinct[k] = true
			prev = k
		}
		if fired > len(distinct) {
			t.Fatalf("%d digits for %d distinct events", fired, len(distinct))
		}
	})
}

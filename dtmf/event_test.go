package dtmf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		hex  string
		want Event
	}{
		{"000a0000", Event{Code: 0, Volume: 10}},                              // SIPp '0' start
		{"010a0140", Event{Code: 1, Volume: 10, Duration: 320}},               // SIPp '1' update
		{"018a08c0", Event{Code: 1, End: true, Volume: 10, Duration: 2240}},   // SIPp '1' end
		{"0a0a00a0", Event{Code: 10, Volume: 10, Duration: 160}},              // '*'
		{"0b8a0320", Event{Code: 11, End: true, Volume: 10, Duration: 800}},   // '#'
		{"0c000001", Event{Code: 12, Duration: 1}},                            // 'A', loudest
		{"0f3fffff", Event{Code: 15, Volume: 63, Duration: 65535}},            // 'D', max volume and duration
		{"05bf8000", Event{Code: 5, End: true, Volume: 63, Duration: 0x8000}}, // all flag bits
		{"10800000", Event{Code: 16, End: true}},                              // flash, not a digit
		{"ff1a1234", Event{Code: 255, Volume: 26, Duration: 0x1234}},          // highest code
		{"09a5ffff", Event{Code: 9, End: true, Volume: 37, Duration: 0xffff}}, // odd volume
		{"07050fa0", Event{Code: 7, Volume: 5, Duration: 4000}},               // half a second at 8 kHz
		{"08871f40", Event{Code: 8, End: true, Volume: 7, Duration: 8000}},    // one second
		{"02000000", Event{Code: 2}},                                          // all zero but code
		{"03ba0000", Event{Code: 3, End: true, Volume: 58}},                   // end with zero duration
		{"04010100", Event{Code: 4, Volume: 1, Duration: 256}},                // byte order
		{"06000001", Event{Code: 6, Duration: 1}},                             // byte order
		{"0d8a0fa0", Event{Code: 13, End: true, Volume: 10, Duration: 4000}},  // 'B'
		{"0e0a7d00", Event{Code: 14, Volume: 10, Duration: 32000}},            // 'C'
		{"0b0aea60", Event{Code: 11, Volume: 10, Duration: 60000}},            // long '#'
		{"00be00a0", Event{Code: 0, End: true, Volume: 62, Duration: 160}},    // volume 62
		{"012a0000", Event{Code: 1, Volume: 42}},                              // volume 42
		{"0f800000", Event{Code: 15, End: true}},                              // bare end
		{"0a3f0001", Event{Code: 10, Volume: 63, Duration: 1}},                // '*' quietest
		{"0b000140", Event{Code: 11, Duration: 320}},                          // '#' loudest
		{"058affff", Event{Code: 5, End: true, Volume: 10, Duration: 0xffff}}, // saturated end
		{"09100010", Event{Code: 9, Volume: 16, Duration: 16}},                // small values
		{"0c9e2710", Event{Code: 12, End: true, Volume: 30, Duration: 10000}}, // 'A' end
		{"200a00a0", Event{Code: 32, Volume: 10, Duration: 160}},              // a tone event
		{"07bf0000", Event{Code: 7, End: true, Volume: 63}},                   // end, max volume, zero duration
		{"01000000", Event{Code: 1}},                                          // minimal
	}
	for _, tc := range tests {
		t.Run(tc.hex, func(t *testing.T) {
			in := unhex(t, tc.hex)
			var got Event
			if err := got.Unmarshal(in); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tc.hex, err)
			}
			if got != tc.want {
				t.Fatalf("Unmarshal(%s) = %+v, want %+v", tc.hex, got, tc.want)
			}
			var buf [8]byte
			n, err := tc.want.MarshalTo(buf[:])
			if err != nil || n != PayloadSize {
				t.Fatalf("MarshalTo(%+v) = %d, %v; want 4, nil", tc.want, n, err)
			}
			if !bytes.Equal(buf[:n], in) {
				t.Fatalf("MarshalTo(%+v) = %x, want %s", tc.want, buf[:n], tc.hex)
			}
		})
	}
}

func TestEventUnmarshalReservedAndExtra(t *testing.T) {
	var e Event
	// Reserved bit set: ignored, and cleared again by MarshalTo.
	if err := e.Unmarshal(unhex(t, "054a00a0")); err != nil {
		t.Fatal(err)
	}
	if want := (Event{Code: 5, Volume: 10, Duration: 160}); e != want {
		t.Fatalf("got %+v, want %+v", e, want)
	}
	var buf [4]byte
	if _, err := e.MarshalTo(buf[:]); err != nil || hex.EncodeToString(buf[:]) != "050a00a0" {
		t.Fatalf("MarshalTo = %x, %v; want 050a00a0", buf, err)
	}
	// A second event in the same payload is ignored.
	if err := e.Unmarshal(unhex(t, "028a0320030a0000")); err != nil {
		t.Fatal(err)
	}
	if want := (Event{Code: 2, End: true, Volume: 10, Duration: 800}); e != want {
		t.Fatalf("got %+v, want %+v", e, want)
	}
}

func TestEventErrors(t *testing.T) {
	for _, in := range [][]byte{nil, {}, {1}, {1, 2, 3}} {
		e := Event{Code: 9}
		if err := e.Unmarshal(in); !errors.Is(err, ErrShortPayload) {
			t.Errorf("Unmarshal(%x) = %v, want ErrShortPayload", in, err)
		}
		if e.Code != 9 {
			t.Errorf("Unmarshal(%x) modified the event: %+v", in, e)
		}
	}
	if _, err := (Event{}).MarshalTo(make([]byte, 3)); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("MarshalTo(3 bytes) = %v, want ErrShortBuffer", err)
	}
	if _, err := (Event{Volume: 64}).MarshalTo(make([]byte, 4)); !errors.Is(err, ErrInvalidVolume) {
		t.Errorf("MarshalTo(volume 64) = %v, want ErrInvalidVolume", err)
	}
}

func TestEventAllFields(t *testing.T) {
	var buf [4]byte
	for code := range 256 {
		for _, end := range []bool{false, true} {
			for _, vol := range []uint8{0, 1, 10, 31, 32, 63} {
				for _, dur := range []uint16{0, 1, 160, 255, 256, 0x7fff, 0x8000, 0xffff} {
					in := Event{Code: uint8(code), End: end, Volume: vol, Duration: dur}
					if _, err := in.MarshalTo(buf[:]); err != nil {
						t.Fatalf("MarshalTo(%+v): %v", in, err)
					}
					var out Event
					if err := out.Unmarshal(buf[:]); err != nil || out != in {
						t.Fatalf("round trip of %+v via %x = %+v, %v", in, buf, out, err)
					}
				}
			}
		}
	}
}

func TestEventNoAlloc(t *testing.T) {
	in := []byte{1, 0x8a, 8, 0xc0}
	var buf [4]byte
	var e Event
	allocs := testing.AllocsPerRun(100, func() {
		_ = e.Unmarshal(in)
		_, _ = e.MarshalTo(buf[:])
		_ = e.Unmarshal(in[:2])
	})
	if allocs != 0 {
		t.Fatalf("Unmarshal/MarshalTo allocate %v times, want 0", allocs)
	}
}

func TestDigitCode(t *testing.T) {
	const keys = "0123456789*#ABCD"
	for code, key := range keys {
		d, ok := Digit(uint8(code))
		if !ok || d != key {
			t.Errorf("Digit(%d) = %q, %v; want %q", code, d, ok, key)
		}
		c, ok := Code(key)
		if !ok || int(c) != code {
			t.Errorf("Code(%q) = %d, %v; want %d", key, c, ok, code)
		}
	}
	for code, key := range "abcd" {
		if c, ok := Code(key); !ok || int(c) != code+12 {
			t.Errorf("Code(%q) = %d, %v; want %d", key, c, ok, code+12)
		}
	}
	for code := 16; code < 256; code++ {
		if d, ok := Digit(uint8(code)); ok {
			t.Errorf("Digit(%d) = %q, want not ok", code, d)
		}
	}
	for _, r := range []rune{'E', 'e', ' ', '+', '/', ':', '@', '٣', 'é', -1, 0, 0x10FFFF} {
		if c, ok := Code(r); ok {
			t.Errorf("Code(%q) = %d, want not ok", r, c)
		}
	}
}

package opus

import (
	"errors"
	"testing"
)

// TestPacketSamples checks durations read from TOC bytes (RFC 6716 §3.1,
// Table 2; §3.2 for the frame count codes).
func TestPacketSamples(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want int
		err  error
	}{
		{[]byte{0 << 3}, 480, nil},           // SILK NB 10 ms
		{[]byte{3 << 3}, 2880, nil},          // SILK NB 60 ms
		{[]byte{11<<3 | 1, 0, 0}, 5760, nil}, // SILK WB 2 × 60 ms
		{[]byte{13 << 3}, 960, nil},          // hybrid SWB 20 ms
		{[]byte{15<<3 | 2, 1, 0}, 1920, nil}, // hybrid FB 2 × 20 ms
		{[]byte{16 << 3}, 120, nil},          // CELT NB 2.5 ms
		{[]byte{31<<3 | 3, 6}, 5760, nil},    // CELT FB 6 × 20 ms
		{[]byte{28<<3 | 3, 48}, 5760, nil},   // CELT FB 48 × 2.5 ms
		{[]byte{28<<3 | 3, 0x80 | 2}, 240, nil},
		{nil, 0, ErrEmptyPayload},
		{[]byte{31<<3 | 3}, 0, ErrInvalidPacket},
		{[]byte{31<<3 | 3, 0}, 0, ErrInvalidPacket},
		{[]byte{31<<3 | 3, 7}, 0, ErrInvalidPacket},
		{[]byte{3<<3 | 3, 3}, 0, ErrInvalidPacket},
	} {
		got, err := PacketSamples(tc.p)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("PacketSamples(%x) = %d, %v; want %d, %v", tc.p, got, err, tc.want, tc.err)
		}
	}
	if !IsDTX([]byte{0xf8}) || !IsDTX([]byte{0xf8, 0}) || IsDTX(nil) || IsDTX([]byte{1, 2, 3}) {
		t.Error("IsDTX misjudges 1, 2, 0 or 3 bytes")
	}
}

package dtmf

import (
	"encoding/hex"
	"errors"
	"math"
	"testing"
	"time"
)

func TestEncodeDigit(t *testing.T) {
	pkts, err := EncodeDigit('5', 100, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		hex    string
		marker bool
		offset time.Duration
	}{
		{"050a00a0", true, 0},
		{"050a0140", false, 20 * time.Millisecond},
		{"050a01e0", false, 40 * time.Millisecond},
		{"050a0280", false, 60 * time.Millisecond},
		{"058a0320", false, 80 * time.Millisecond},
		{"058a0320", false, 100 * time.Millisecond},
		{"058a0320", false, 120 * time.Millisecond},
	}
	if len(pkts) != len(want) {
		t.Fatalf("%d packets, want %d: %+v", len(pkts), len(want), pkts)
	}
	for i, w := range want {
		p := pkts[i]
		if got := hex.EncodeToString(p.Payload[:]); got != w.hex || p.Marker != w.marker || p.Offset != w.offset || p.End != (i >= 4) {
			t.Errorf("packet %d = %s M=%v E=%v at %v; want %s M=%v E=%v at %v",
				i, got, p.Marker, p.End, p.Offset, w.hex, w.marker, i >= 4, w.offset)
		}
	}
}

func TestEncoderShapes(t *testing.T) {
	tests := []struct {
		enc              Encoder
		digit            rune
		durMs, ptimeMs   int
		n                int    // packets
		endDur, firstDur uint16 // durations of the end packets and the first one
	}{
		{Encoder{}, '1', 20, 20, 4, 160, 160},
		{Encoder{}, '1', 10, 20, 4, 80, 80},
		{Encoder{}, '#', 250, 20, 15, 2000, 160},
		{Encoder{}, '*', 90, 30, 5, 720, 240},
		{Encoder{ClockRate: 48000, Volume: 63}, 'd', 100, 20, 7, 4800, 960},
		{Encoder{}, '0', 8000, 20, 402, 64000, 160},
	}
	for _, tc := range tests {
		pkts, err := tc.enc.Encode(tc.digit, tc.durMs, tc.ptimeMs, nil)
		if err != nil {
			t.Errorf("%+v.Encode(%q, %d, %d): %v", tc.enc, tc.digit, tc.durMs, tc.ptimeMs, err)
			continue
		}
		if len(pkts) != tc.n {
			t.Errorf("%+v.Encode(%q, %d, %d): %d packets, want %d", tc.enc, tc.digit, tc.durMs, tc.ptimeMs, len(pkts), tc.n)
			continue
		}
		code, _ := Code(tc.digit)
		var prev uint16
		for i, p := range pkts {
			var e Event
			if err := e.Unmarshal(p.Payload[:]); err != nil {
				t.Fatal(err)
			}
			isEnd := i >= len(pkts)-EndRepeats
			switch {
			case e.Code != code || e.Volume != tc.enc.Volume || e.End != isEnd || p.End != isEnd || p.Marker != (i == 0):
				t.Errorf("%q packet %d: %+v M=%v", tc.digit, i, e, p.Marker)
			case i == 0 && e.Duration != tc.firstDur:
				t.Errorf("%q first duration %d, want %d", tc.digit, e.Duration, tc.firstDur)
			case isEnd && e.Duration != tc.endDur:
				t.Errorf("%q end duration %d, want %d", tc.digit, e.Duration, tc.endDur)
			case e.Duration < prev:
				t.Errorf("%q packet %d: duration %d went down from %d", tc.digit, i, e.Duration, prev)
			case p.Offset != time.Duration(i*tc.ptimeMs)*time.Millisecond:
				t.Errorf("%q packet %d: offset %v", tc.digit, i, p.Offset)
			}
			prev = e.Duration
		}
	}
}

// TestEncodeDetect sends every digit through the encoder and the detector.
func TestEncodeDetect(t *testing.T) {
	var d Detector
	var got []rune
	var pkts []Packet
	const keys = "0123456789*#ABCD"
	for i, key := range keys {
		var err error
		pkts, err = EncodeDigit(key, 120, 20, pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if digit, ok := d.Feed(42, uint32(i)*1600, p.Payload[:]); ok {
				got = append(got, digit)
			}
		}
	}
	if string(got) != keys {
		t.Fatalf("detected %q, want %q", string(got), keys)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		enc            Encoder
		digit          rune
		durMs, ptimeMs int
		err            error
	}{
		{Encoder{}, 'E', 100, 20, ErrInvalidDigit},
		{Encoder{}, '!', 100, 20, ErrInvalidDigit},
		{Encoder{Volume: 64}, '1', 100, 20, ErrInvalidVolume},
		{Encoder{}, '1', 0, 20, ErrInvalidDuration},
		{Encoder{}, '1', -5, 20, ErrInvalidDuration},
		{Encoder{}, '1', 100, 0, ErrInvalidDuration},
		{Encoder{}, '1', 8192, 20, ErrInvalidDuration}, // 65536 samples
		{Encoder{ClockRate: 48000}, '1', 2000, 20, ErrInvalidDuration},
		{Encoder{ClockRate: 10}, '1', 1000, 20, ErrInvalidDuration}, // ptime under one sample
		{Encoder{}, '1', math.MaxInt32, 20, ErrInvalidDuration},
		{Encoder{}, '1', 100, math.MaxInt32, ErrInvalidDuration},
	}
	for _, tc := range tests {
		if _, err := tc.enc.Encode(tc.digit, tc.durMs, tc.ptimeMs, nil); !errors.Is(err, tc.err) {
			t.Errorf("%+v.Encode(%q, %d, %d) = %v, want %v", tc.enc, tc.digit, tc.durMs, tc.ptimeMs, err, tc.err)
		}
	}
}

func TestEncodeNoAlloc(t *testing.T) {
	dst := make([]Packet, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		dst, _ = EncodeDigit('#', 160, 20, dst)
	})
	if allocs != 0 {
		t.Fatalf("EncodeDigit allocates %v times with room in dst, want 0", allocs)
	}
}

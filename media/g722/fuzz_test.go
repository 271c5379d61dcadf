package g722

import (
	"encoding/binary"
	"testing"
)

// checkBand fails if a band's state left the ranges G.722 bounds it to
// (§3.5, §3.6): scale factors, pole and zero coefficients, predictions.
func checkBand(t *testing.T, which string, s *band, logMax int32) {
	t.Helper()
	ok := s.logScal >= 0 && s.logScal <= logMax &&
		s.scale > 0 && s.scale <= 4096 &&
		s.a[1] >= -12288 && s.a[1] <= 12288 &&
		s.a[0] >= -(15360-s.a[1]) && s.a[0] <= 15360-s.a[1] &&
		s.sp >= -32768 && s.sp <= 32767 && s.rPrev >= -32768 && s.rPrev <= 32767
	for i := range s.b {
		ok = ok && s.b[i] >= -32768 && s.b[i] <= 32767 && s.d[i] >= -32768 && s.d[i] <= 32767
	}
	if !ok {
		t.Fatalf("%s band state out of range: %+v", which, *s)
	}
}

// FuzzDecode: any bytes decode, two samples per byte, into a buffer of any
// size without writing past what Decode reports, and leave the state in
// range.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 0xff, 0x3c, 0xc3})
	f.Add(make([]byte, FrameBytes))
	f.Fuzz(func(t *testing.T, payload []byte) {
		d := NewDecoder()
		out := make([]int16, 2*len(payload)+1)
		if n := d.Decode(out, payload); n != 2*len(payload) {
			t.Fatalf("Decode of %d bytes gave %d samples", len(payload), n)
		}
		checkBand(t, "lower", &d.low, lowLogMax)
		checkBand(t, "higher", &d.high, highLogMax)

		// A short buffer bounds the output.
		short := make([]int16, len(payload)/2+1)
		guard := short[:len(short)-1]
		short[len(short)-1] = 0x7eef
		want := len(guard) / 2 * 2
		if n := NewDecoder().Decode(guard, payload); n != min(want, 2*len(payload)) {
			t.Fatalf("Decode into %d samples gave %d", len(guard), n)
		}
		if short[len(short)-1] != 0x7eef {
			t.Fatal("Decode wrote past its buffer")
		}
	})
}

// FuzzEncode: any samples (the fuzz input read as s16le) encode to one
// byte per pair, the state stays in range, and our decoder takes the
// result back.
func FuzzEncode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80, 0xff, 0x7f, 0x00, 0x80})
	f.Add(make([]byte, 2*FrameSamples))
	f.Fuzz(func(t *testing.T, raw []byte) {
		pcm := make([]int16, len(raw)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		e := NewEncoder()
		payload := make([]byte, len(pcm)/2+1)
		n := e.Encode(payload, pcm)
		if n != len(pcm)/2 {
			t.Fatalf("Encode of %d samples gave %d bytes", len(pcm), n)
		}
		checkBand(t, "lower", &e.low, lowLogMax)
		checkBand(t, "higher", &e.high, highLogMax)
		out := make([]int16, 2*n)
		if k := NewDecoder().Decode(out, payload[:n]); k != 2*n {
			t.Fatalf("Decode of %d bytes gave %d samples", n, k)
		}
	})
}

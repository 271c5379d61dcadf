package media

import (
	"math"
	"testing"

	"github.com/zaf/g711"
)

// g711MaxError is the largest quantisation error G.711 allows for a sample
// of magnitude x: half a step of the segment x falls in (a step is 1/16 of
// the segment's lower bound, so at most |x|/32), plus the clipping near full
// scale (µ-law tops out at 32124, A-law at 32256).
func g711MaxError(x int) int {
	if x < 0 {
		x = -x
	}
	e := x/32 + 16
	if x > 32124 {
		e = max(e, x-32124+1)
	}
	return e
}

func TestCodecRoundTripAllSamples(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		t.Run(c.String(), func(t *testing.T) {
			var enc [1]byte
			var dec [1]int16
			worst := 0
			for x := math.MinInt16; x <= math.MaxInt16; x++ {
				if n := c.Encode(enc[:], []int16{int16(x)}); n != 1 {
					t.Fatalf("Encode returned %d", n)
				}
				if n := c.Decode(dec[:], enc[:]); n != 1 {
					t.Fatalf("Decode returned %d", n)
				}
				err := int(dec[0]) - x
				if err < 0 {
					err = -err
				}
				worst = max(worst, err)
				if err > g711MaxError(x) {
					t.Fatalf("%v: %d -> %#02x -> %d: error %d > %d", c, x, enc[0], dec[0], err, g711MaxError(x))
				}
			}
			t.Logf("%v: worst absolute round-trip error %d", c, worst)
		})
	}
}

// TestEncodeTables: Encode and EncodeSample give exactly zaf/g711's code word
// for every one of the 65536 samples.
func TestEncodeTables(t *testing.T) {
	var pcm [1]int16
	var got [1]byte
	for x := math.MinInt16; x <= math.MaxInt16; x++ {
		pcm[0] = int16(x)
		PCMU.Encode(got[:], pcm[:])
		if want := g711.EncodeUlawFrame(int16(x)); got[0] != want {
			t.Fatalf("PCMU %d: %#02x, g711 %#02x", x, got[0], want)
		}
		PCMA.Encode(got[:], pcm[:])
		if want := g711.EncodeAlawFrame(int16(x)); got[0] != want {
			t.Fatalf("PCMA %d: %#02x, g711 %#02x", x, got[0], want)
		}
		if PCMU.EncodeSample(int16(x)) != g711.EncodeUlawFrame(int16(x)) || PCMA.EncodeSample(int16(x)) != g711.EncodeAlawFrame(int16(x)) {
			t.Fatalf("EncodeSample(%d) differs from g711", x)
		}
	}
}

func TestCodecCodeWordsAreFixedPoints(t *testing.T) {
	// Decoding a code word and encoding the result must give a code word
	// that decodes to the same value (µ-law's two zeros aside, the same
	// code word).
	for _, c := range []Codec{PCMU, PCMA} {
		for b := range 256 {
			var pcm [1]int16
			c.Decode(pcm[:], []byte{byte(b)})
			var enc [1]byte
			c.Encode(enc[:], pcm[:])
			var again [1]int16
			c.Decode(again[:], enc[:])
			if again[0] != pcm[0] {
				t.Errorf("%v: %#02x -> %d -> %#02x -> %d", c, b, pcm[0], enc[0], again[0])
			}
		}
	}
}

func TestCodecToneRoundTrip(t *testing.T) {
	tone := Tone(1000, -6, 100)
	for _, c := range []Codec{PCMU, PCMA} {
		enc := make([]byte, len(tone))
		if n := c.Encode(enc, tone); n != len(tone) {
			t.Fatalf("Encode: %d", n)
		}
		dec := make([]int16, len(tone))
		if n := c.Decode(dec, enc); n != len(tone) {
			t.Fatalf("Decode: %d", n)
		}
		var sig, noise float64
		for i := range tone {
			d := float64(dec[i]) - float64(tone[i])
			if math.Abs(d) > float64(g711MaxError(int(tone[i]))) {
				t.Fatalf("%v sample %d: %d -> %d", c, i, tone[i], dec[i])
			}
			sig += float64(tone[i]) * float64(tone[i])
			noise += d * d
		}
		// G.711 gives about 38 dB SNR on a loud sine.
		if snr := 10 * math.Log10(sig/noise); snr < 33 {
			t.Errorf("%v: SNR %.1f dB, want >= 33", c, snr)
		}
	}
}

func TestCodecShortBuffers(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		if n := c.Encode(make([]byte, 3), make([]int16, 10)); n != 3 {
			t.Errorf("%v Encode short dst: %d", c, n)
		}
		if n := c.Encode(make([]byte, 10), make([]int16, 4)); n != 4 {
			t.Errorf("%v Encode short pcm: %d", c, n)
		}
		if n := c.Decode(make([]int16, 2), make([]byte, 10)); n != 2 {
			t.Errorf("%v Decode short dst: %d", c, n)
		}
		if n := c.Decode(make([]int16, 10), nil); n != 0 {
			t.Errorf("%v Decode empty: %d", c, n)
		}
	}
}

func TestCodecSilence(t *testing.T) {
	// µ-law has an exact zero. A-law has none: its quietest code words are
	// ±8, and Silence must be the one the encoder produces for 0.
	for _, tc := range []struct {
		c       Codec
		decoded int16
	}{{PCMU, 0}, {PCMA, 8}} {
		var pcm [1]int16
		tc.c.Decode(pcm[:], []byte{tc.c.Silence()})
		if pcm[0] != tc.decoded {
			t.Errorf("%v: Silence %#02x decodes to %d, want %d", tc.c, tc.c.Silence(), pcm[0], tc.decoded)
		}
		var enc [1]byte
		tc.c.Encode(enc[:], []int16{0})
		if enc[0] != tc.c.Silence() {
			t.Errorf("%v: Encode(0) = %#02x, Silence() = %#02x", tc.c, enc[0], tc.c.Silence())
		}
	}
}

func TestCodecByNameAndPayloadType(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Codec
		ok   bool
	}{
		{"PCMU", PCMU, true}, {"pcmu", PCMU, true}, {"PcMa", PCMA, true}, {"PCMA", PCMA, true},
		{"G722", G722, true}, {"opus", Opus, true}, {"OPUS", Opus, true}, {"G729", CodecInvalid, false}, {"", CodecInvalid, false}, {"telephone-event", CodecInvalid, false},
	} {
		c, ok := CodecByName(tc.name)
		if c != tc.c || ok != tc.ok {
			t.Errorf("CodecByName(%q) = %v, %v; want %v, %v", tc.name, c, ok, tc.c, tc.ok)
		}
	}
	for pt := range 256 {
		c, ok := CodecByPayloadType(uint8(pt))
		switch pt {
		case 0:
			if c != PCMU || !ok {
				t.Errorf("pt 0: %v %v", c, ok)
			}
		case 8:
			if c != PCMA || !ok {
				t.Errorf("pt 8: %v %v", c, ok)
			}
		case 9:
			if c != G722 || !ok {
				t.Errorf("pt 9: %v %v", c, ok)
			}
		default:
			if ok || c != CodecInvalid {
				t.Errorf("pt %d: %v %v", pt, c, ok)
			}
		}
	}
	for _, c := range []Codec{PCMU, PCMA, G722} {
		back, ok := CodecByPayloadType(c.PayloadType())
		if !ok || back != c {
			t.Errorf("%v: PayloadType %d maps back to %v", c, c.PayloadType(), back)
		}
		byName, ok := CodecByName(c.String())
		if !ok || byName != c {
			t.Errorf("%v: String %q maps back to %v", c, c.String(), byName)
		}
	}
	if PCMU.PayloadType() != 0 || PCMA.PayloadType() != 8 {
		t.Errorf("payload types %d %d", PCMU.PayloadType(), PCMA.PayloadType())
	}
	if s := Codec(7).String(); s != "Codec(7)" {
		t.Errorf("Codec(7).String() = %q", s)
	}
}

func TestToneLevelAndRamps(t *testing.T) {
	tone := Tone(1000, -6, 200)
	if len(tone) != 1600 {
		t.Fatalf("len %d", len(tone))
	}
	peak := 0
	for _, s := range tone {
		peak = max(peak, int(math.Abs(float64(s))))
	}
	want := 32767 * math.Pow(10, -6.0/20)
	if math.Abs(float64(peak)-want) > 2 {
		t.Errorf("peak %d, want %.0f", peak, want)
	}
	if tone[0] != 0 || tone[len(tone)-1] != 0 {
		t.Errorf("tone does not start and end at 0: %d %d", tone[0], tone[len(tone)-1])
	}
}

func BenchmarkCodecEncode160(b *testing.B) {
	pcm := Tone(1000, -10, 20)
	dst := make([]byte, FrameSamples)
	for _, c := range []Codec{PCMU, PCMA} {
		b.Run(c.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Encode(dst, pcm)
			}
		})
	}
}

func BenchmarkCodecDecode160(b *testing.B) {
	payload := make([]byte, FrameSamples)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	dst := make([]int16, FrameSamples)
	for _, c := range []Codec{PCMU, PCMA} {
		b.Run(c.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Decode(dst, payload)
			}
		})
	}
}

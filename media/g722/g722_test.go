package g722

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"chorus/internal/audiotest"
)

// reference is one input of testdata/ with what FFmpeg 5.1 made of it
// (testdata/README.md gives the commands).
type reference struct {
	name string
	// decodedSHA256 is the SHA-256 of FFmpeg's decoding of name.g722 as
	// s16le: the decoded samples themselves would be as large again as
	// the input, and the check is for exact agreement.
	decodedSHA256 string
}

var references = []reference{
	{"speech", "e09ead2da4a6deaeb0eb19f69771b9dc49eec87f2960d56fda6074c417785f4c"},
	{"sweep", "f1b38455287fec8f75057f40ceca12f0bcecba14f193e0589a4b528710aac422"},
}

func readPCM(t testing.TB, path string) []int16 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytesToPCM(b)
}

func bytesToPCM(b []byte) []int16 {
	pcm := make([]int16, len(b)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return pcm
}

func pcmToBytes(pcm []int16) []byte {
	b := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	return b
}

// encodeFrames encodes pcm 20 ms at a time, as a call does, so that frame
// boundaries are exercised too.
func encodeFrames(e *Encoder, pcm []int16) []byte {
	out := make([]byte, 0, len(pcm)/2)
	var buf [FrameBytes]byte
	for len(pcm) > 0 {
		n := min(len(pcm), FrameSamples)
		k := e.Encode(buf[:], pcm[:n])
		out = append(out, buf[:k]...)
		pcm = pcm[n:]
	}
	return out
}

func decodeFrames(d *Decoder, payload []byte) []int16 {
	out := make([]int16, 0, 2*len(payload))
	var buf [FrameSamples]int16
	for len(payload) > 0 {
		n := min(len(payload), FrameBytes)
		k := d.Decode(buf[:], payload[:n])
		out = append(out, buf[:k]...)
		payload = payload[n:]
	}
	return out
}

// bitAgreement returns the share of equal bytes in a and b (over the
// shorter) and the index of the first difference, -1 if none.
func bitAgreement(a, b []byte) (share float64, first int) {
	n := min(len(a), len(b))
	first = -1
	same := 0
	for i := range n {
		if a[i] == b[i] {
			same++
		} else if first < 0 {
			first = i
		}
	}
	if n == 0 {
		return 1, first
	}
	return float64(same) / float64(n), first
}

// sampleDiff returns how many samples of a and b differ and by how much at
// most.
func sampleDiff(a, b []int16) (count, maxAbs int) {
	for i := range min(len(a), len(b)) {
		d := int(a[i]) - int(b[i])
		if d != 0 {
			count++
			maxAbs = max(maxAbs, d, -d)
		}
	}
	return count, maxAbs
}

// TestEncoderMatchesFFmpegReference: our encoder reproduces, bit for bit,
// the bitstreams FFmpeg's G.722 encoder made of the committed speech and
// sweep (which covers both sub-bands and the crossover at 4 kHz).
func TestEncoderMatchesFFmpegReference(t *testing.T) {
	for _, ref := range references {
		t.Run(ref.name, func(t *testing.T) {
			pcm := readPCM(t, filepath.Join("testdata", ref.name+".raw"))
			want, err := os.ReadFile(filepath.Join("testdata", ref.name+".g722"))
			if err != nil {
				t.Fatal(err)
			}
			got := encodeFrames(NewEncoder(), pcm)
			if len(got) != len(want) {
				t.Fatalf("encoded %d bytes, FFmpeg %d", len(got), len(want))
			}
			if share, first := bitAgreement(got, want); first >= 0 {
				t.Fatalf("bitstreams differ from byte %d (at %d ms): %.4f %% agree",
					first, first/8, 100*share)
			}
		})
	}
}

// TestDecoderMatchesFFmpegReference: our decoding of FFmpeg's bitstreams is
// exactly FFmpeg's decoding of them.
func TestDecoderMatchesFFmpegReference(t *testing.T) {
	for _, ref := range references {
		t.Run(ref.name, func(t *testing.T) {
			payload, err := os.ReadFile(filepath.Join("testdata", ref.name+".g722"))
			if err != nil {
				t.Fatal(err)
			}
			got := decodeFrames(NewDecoder(), payload)
			if len(got) != 2*len(payload) {
				t.Fatalf("decoded %d samples from %d bytes", len(got), len(payload))
			}
			sum := sha256.Sum256(pcmToBytes(got))
			if h := hex.EncodeToString(sum[:]); h != ref.decodedSHA256 {
				t.Fatalf("decoded samples hash to %s, FFmpeg's to %s (TestFFmpegCrossCheck shows the differences)",
					h, ref.decodedSHA256)
			}
		})
	}
}

// TestRTPTiming pins the numbers a caller builds RTP on: 20 ms is 320
// samples, 160 bytes, and 160 ticks of the 8000 Hz RTP clock (RFC 3551
// §4.5.2), not 320.
func TestRTPTiming(t *testing.T) {
	if FrameSamples != 320 || FrameBytes != 160 {
		t.Fatalf("FrameSamples %d, FrameBytes %d", FrameSamples, FrameBytes)
	}
	if ticks := RTPClockRate / 50; ticks != FrameBytes {
		t.Fatalf("RTP ticks per 20 ms %d, want one per byte (%d)", ticks, FrameBytes)
	}
	if PayloadType != 9 {
		t.Fatalf("payload type %d", PayloadType)
	}
}

// TestBuffers: Encode and Decode stop at the shorter of input and output,
// ignore an odd trailing sample, and write nothing beyond what they report.
func TestBuffers(t *testing.T) {
	pcm := make([]int16, 321)
	audiotest.Tone(pcm, 1000, -10, SampleRate, nil)

	dst := bytes.Repeat([]byte{0xAA}, 200)
	if n := NewEncoder().Encode(dst, pcm); n != 160 {
		t.Fatalf("Encode of 321 samples wrote %d bytes, want 160", n)
	}
	if !bytes.Equal(dst[160:], bytes.Repeat([]byte{0xAA}, 40)) {
		t.Fatal("Encode wrote past its count")
	}
	if n := NewEncoder().Encode(dst[:10], pcm); n != 10 {
		t.Fatalf("Encode into 10 bytes wrote %d", n)
	}
	if n := NewEncoder().Encode(dst, nil); n != 0 {
		t.Fatalf("Encode of nothing wrote %d", n)
	}

	out := make([]int16, 400)
	for i := range out {
		out[i] = 0x5555
	}
	if n := NewDecoder().Decode(out, dst[:160]); n != 320 {
		t.Fatalf("Decode of 160 bytes wrote %d samples, want 320", n)
	}
	for _, s := range out[320:] {
		if s != 0x5555 {
			t.Fatal("Decode wrote past its count")
		}
	}
	if n := NewDecoder().Decode(out[:7], dst[:160]); n != 6 {
		t.Fatalf("Decode into 7 samples wrote %d, want 6 (whole code words only)", n)
	}
}

// TestReset: after Reset an encoder and a decoder behave as new ones, so a
// reused codec does not carry one call's adaptation into the next.
func TestReset(t *testing.T) {
	speech := readPCM(t, filepath.Join("testdata", "speech.raw"))
	first := speech[:16000]

	e := NewEncoder()
	fresh := encodeFrames(e, first)
	encodeFrames(e, speech[16000:])
	e.Reset()
	if again := encodeFrames(e, first); !bytes.Equal(fresh, again) {
		t.Fatal("encoder after Reset differs from a new one")
	}

	var zero Encoder // Reset also readies a zero value
	zero.Reset()
	if got := encodeFrames(&zero, first); !bytes.Equal(fresh, got) {
		t.Fatal("reset zero Encoder differs from NewEncoder")
	}

	d := NewDecoder()
	want := decodeFrames(d, fresh)
	decodeFrames(d, bytes.Repeat([]byte{0x3c, 0xc3, 0x7f}, 999))
	d.Reset()
	if got := decodeFrames(d, fresh); !equalPCM(got, want) {
		t.Fatal("decoder after Reset differs from a new one")
	}
}

func equalPCM(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// codecDelay is the delay of G.722's encoder and decoder together, in 16
// kHz samples: the two 24-tap QMFs. The round trip is compared after it.
const codecDelay = 22

// snrDB returns the signal-to-noise ratio of out against in delayed by
// codecDelay, skipping the first skip samples while the ADPCM adapts.
func snrDB(in, out []int16, skip int) float64 {
	var sig, noise float64
	for i := skip; i < len(out); i++ {
		x := float64(in[i-codecDelay])
		e := float64(out[i]) - x
		sig += x * x
		noise += e * e
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

func roundTrip(pcm []int16) []int16 {
	return decodeFrames(NewDecoder(), encodeFrames(NewEncoder(), pcm))
}

// TestRoundTripDelay: the codec pair delays by codecDelay samples, which
// the SNR figures rely on; checked by cross-correlation on speech.
func TestRoundTripDelay(t *testing.T) {
	in := readPCM(t, filepath.Join("testdata", "speech.raw"))
	out := roundTrip(in)
	best, bestLag := math.Inf(-1), -1
	for lag := range 64 {
		var c float64
		for i := lag; i < len(out); i++ {
			c += float64(in[i-lag]) * float64(out[i])
		}
		if c > best {
			best, bestLag = c, lag
		}
	}
	if bestLag != codecDelay {
		t.Fatalf("round trip delay %d samples, want %d", bestLag, codecDelay)
	}
}

// TestRoundTripTones: pure tones through our encoder and decoder come back
// at their level and with a signal-to-noise ratio that G.722 should give:
// the 6-bit lower band is good for well over 30 dB; the 2-bit higher band
// (4–8 kHz) is coarse by design, so tones there get a lower bound. The
// bounds sit a few dB under what was measured (logged with -v).
func TestRoundTripTones(t *testing.T) {
	cases := []struct {
		hz, dBFS, minSNR float64
	}{
		{200, -6, 30}, {440, -12, 30}, {1000, -6, 30}, {1000, -30, 30},
		{2000, -12, 30}, {3000, -12, 30}, {3400, -20, 30},
		{5000, -12, 18}, {6000, -12, 18}, {7000, -12, 18},
	}
	const skip = SampleRate / 10 // 100 ms to adapt
	for _, c := range cases {
		in := make([]int16, SampleRate)
		audiotest.Tone(in, c.hz, c.dBFS, SampleRate, nil)
		out := roundTrip(in)
		snr := snrDB(in, out, skip)
		level := audiotest.LevelDBFS(out[skip:], c.hz, SampleRate)
		t.Logf("%5.0f Hz at %3.0f dBFS: SNR %5.1f dB, level %6.2f dBFS", c.hz, c.dBFS, snr, level)
		if snr < c.minSNR {
			t.Errorf("%.0f Hz at %.0f dBFS: SNR %.1f dB, want ≥ %.0f", c.hz, c.dBFS, snr, c.minSNR)
		}
		if math.Abs(level-c.dBFS) > 0.5 {
			t.Errorf("%.0f Hz at %.0f dBFS came back at %.2f dBFS", c.hz, c.dBFS, level)
		}
	}
}

// TestRoundTripSpeech: espeak-ng speech (testdata/speech.raw) through our
// encoder and decoder; the bound sits under the measured figure.
func TestRoundTripSpeech(t *testing.T) {
	in := readPCM(t, filepath.Join("testdata", "speech.raw"))
	snr := snrDB(in, roundTrip(in), SampleRate/10)
	t.Logf("speech: SNR %.1f dB", snr)
	if snr < 20 {
		t.Fatalf("speech SNR %.1f dB, want ≥ 20", snr)
	}
}

// TestNoAllocs: a 20 ms frame each way allocates nothing (the mixer's tick
// encodes and decodes every member's frame).
func TestNoAllocs(t *testing.T) {
	pcm := make([]int16, FrameSamples)
	audiotest.Tone(pcm, 1000, -10, SampleRate, nil)
	e, d := NewEncoder(), NewDecoder()
	var payload [FrameBytes]byte
	var out [FrameSamples]int16
	if a := testing.AllocsPerRun(100, func() {
		e.Encode(payload[:], pcm)
		d.Decode(out[:], payload[:])
	}); a != 0 {
		t.Fatalf("%v allocations per frame", a)
	}
}

func BenchmarkEncode20ms(b *testing.B) {
	pcm := readPCM(b, filepath.Join("testdata", "speech.raw"))
	e := NewEncoder()
	var payload [FrameBytes]byte
	b.ReportAllocs()
	off := 0
	for b.Loop() {
		e.Encode(payload[:], pcm[off:off+FrameSamples])
		off += FrameSamples
		if off+FrameSamples > len(pcm) {
			off = 0
		}
	}
}

func BenchmarkDecode20ms(b *testing.B) {
	payload, err := os.ReadFile(filepath.Join("testdata", "speech.g722"))
	if err != nil {
		b.Fatal(err)
	}
	d := NewDecoder()
	var out [FrameSamples]int16
	b.ReportAllocs()
	off := 0
	for b.Loop() {
		d.Decode(out[:], payload[off:off+FrameBytes])
		off += FrameBytes
		if off+FrameBytes > len(payload) {
			off = 0
		}
	}
}

// TestQMFTaps: the written-out filter in qmf.push is the 24-tap QMF of
// Table 11 (qmfCoeffs), checked on random input against the plain loop.
func TestQMFTaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var q qmf
	var hist []int32
	for range 1000 {
		a, b := int32(int16(rng.Uint32())), int32(int16(rng.Uint32()))
		hist = append(hist, a, b)
		odd, even := q.push(a, b)
		var wantOdd, wantEven int32
		w := make([]int32, 24)
		copy(w[24-min(24, len(hist)):], hist[max(0, len(hist)-24):])
		for i := range 12 {
			wantEven += w[2*i] * qmfCoeffs[i]
			wantOdd += w[2*i+1] * qmfCoeffs[11-i]
		}
		if odd != wantOdd || even != wantEven {
			t.Fatalf("after %d pairs: got (%d, %d), want (%d, %d)", len(hist)/2, odd, even, wantOdd, wantEven)
		}
	}
}

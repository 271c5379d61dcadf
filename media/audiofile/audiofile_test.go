package audiofile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/zaf/g711"
)

// goertzel returns the amplitude (1 = full scale) of the freq component of
// x, sampled at rate. Pick len(x) so that freq makes whole cycles in it.
func goertzel(x []int16, freq float64, rate int) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = float64(v)/32768+coeff*s1-s2, s1
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(max(power, 0)) / float64(len(x))
}

// rms returns the RMS of x, 1 = full scale.
func rms(x []int16) float64 {
	var sum float64
	for _, v := range x {
		f := float64(v) / 32768
		sum += f * f
	}
	return math.Sqrt(sum / float64(max(len(x), 1)))
}

func dB(ratio float64) float64 { return 20 * math.Log10(ratio) }

// sine returns seconds of a sine of amplitude amp at rate.
func sine(freq, amp float64, rate int, seconds float64) []float64 {
	out := make([]float64, int(seconds*float64(rate)))
	for i := range out {
		out[i] = amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))
	}
	return out
}

// wavSpec describes a WAV file for makeWAV.
type wavSpec struct {
	name       string
	tag        uint16 // wavPCM, wavFloat, wavALaw, wavMuLaw
	bits       int
	extensible bool
}

// makeWAV writes channels (each a slice of samples in [-1, 1]) as a WAV
// file in the format spec describes.
func makeWAV(t testing.TB, spec wavSpec, rate int, channels ...[]float64) []byte {
	t.Helper()
	nch := len(channels)
	width := (spec.bits + 7) / 8
	var pcm bytes.Buffer
	for i := range channels[0] {
		for _, ch := range channels {
			v := ch[i]
			switch {
			case spec.tag == wavALaw:
				pcm.WriteByte(g711.EncodeAlawFrame(int16(math.Round(v * 32767))))
			case spec.tag == wavMuLaw:
				pcm.WriteByte(g711.EncodeUlawFrame(int16(math.Round(v * 32767))))
			case spec.tag == wavFloat && spec.bits == 32:
				binary.Write(&pcm, binary.LittleEndian, float32(v))
			case spec.tag == wavFloat:
				binary.Write(&pcm, binary.LittleEndian, v)
			case spec.bits == 8:
				pcm.WriteByte(byte(math.Round(v*127) + 128))
			default:
				full := int64(math.Round(v * float64(int64(1)<<(spec.bits-1)-1)))
				full <<= 8*width - spec.bits // left-justify
				for b := range width {
					pcm.WriteByte(byte(full >> (8 * b)))
				}
			}
		}
	}
	var f bytes.Buffer
	le := func(v any) { binary.Write(&f, binary.LittleEndian, v) }
	fmtSize := 16
	if spec.extensible {
		fmtSize = 40
	}
	f.WriteString("RIFF")
	le(uint32(4 + 8 + fmtSize + 8 + pcm.Len()))
	f.WriteString("WAVEfmt ")
	le(uint32(fmtSize))
	tag := spec.tag
	if spec.extensible {
		tag = wavExtensible
	}
	le(tag)
	le(uint16(nch))
	le(uint32(rate))
	le(uint32(rate * nch * width))
	le(uint16(nch * width))
	le(uint16(spec.bits))
	if spec.extensible {
		le(uint16(22))
		le(uint16(spec.bits))
		le(uint32(0))
		le(spec.tag)
		f.Write([]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71})
	}
	f.WriteString("data")
	le(uint32(pcm.Len()))
	f.Write(pcm.Bytes())
	return f.Bytes()
}

var wavSpecs = []wavSpec{
	{"pcm8", wavPCM, 8, false},
	{"pcm16", wavPCM, 16, false},
	{"pcm24", wavPCM, 24, false},
	{"pcm32", wavPCM, 32, false},
	{"pcm12", wavPCM, 12, false},
	{"float32", wavFloat, 32, false},
	{"float64", wavFloat, 64, false},
	{"alaw", wavALaw, 8, false},
	{"mulaw", wavMuLaw, 8, false},
	{"ext-pcm16", wavPCM, 16, true},
	{"ext-pcm24", wavPCM, 24, true},
	{"ext-float32", wavFloat, 32, true},
	{"ext-mulaw", wavMuLaw, 8, true},
}

var rates = []int{8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000}

// checkTone asserts that a holds a freq tone of amplitude amp within tol
// dB, and nothing within 30 dB of it at other probe frequencies (µ-law
// puts its third harmonic at -34 dB).
func checkTone(t *testing.T, a Audio, freq, amp, tol float64) {
	t.Helper()
	pcm, q := a.Samples, a.Rate/4
	if len(pcm) < 2*q {
		t.Fatalf("only %d samples", len(pcm))
	}
	mid := pcm[len(pcm)/2-q : len(pcm)/2+q] // 0.5 s: whole cycles of every probe
	got := goertzel(mid, freq, a.Rate)
	if d := dB(got / amp); math.Abs(d) > tol {
		t.Errorf("%g Hz level %.2f dB off (amplitude %.4f, want %.4f)", freq, d, got, amp)
	}
	for _, other := range []float64{300, 700, 1500, 2000, 3000} {
		if other == freq {
			continue
		}
		if o := goertzel(mid, other, a.Rate); dB(o/amp) > -30 {
			t.Errorf("%g Hz leaks %.1f dB below the tone", other, -dB(o/amp))
		}
	}
}

func TestDecodeWAVFormatsAndRates(t *testing.T) {
	for _, spec := range wavSpecs {
		for _, rate := range rates {
			for _, nch := range []int{1, 2} {
				tone := sine(1000, 0.5, rate, 1)
				chans := [][]float64{tone}
				if nch == 2 {
					chans = append(chans, tone)
				}
				data := makeWAV(t, spec, rate, chans...)
				pcm, err := Decode(data)
				if err != nil {
					t.Fatalf("%s %d Hz %dch: %v", spec.name, rate, nch, err)
				}
				if pcm.Rate != SourceRate(rate) {
					t.Errorf("%s %d Hz: decoded at %d Hz, want %d", spec.name, rate, pcm.Rate, SourceRate(rate))
				}
				if n := len(pcm.Samples); n < pcm.Rate-10 || n > pcm.Rate+10 || pcm.Duration().Round(10*time.Millisecond) != time.Second {
					t.Errorf("%s %d Hz %dch: %d samples (%s), want 1 s", spec.name, rate, nch, n, pcm.Duration())
				}
				tol := 0.2
				if spec.bits == 8 {
					tol = 0.5 // G.711 and 8-bit quantisation
				}
				t.Run(fmt.Sprintf("%s/%d/%dch", spec.name, rate, nch), func(t *testing.T) {
					checkTone(t, pcm, 1000, 0.5, tol)
				})
			}
		}
	}
}

func TestDecodeStereoDownmixAverages(t *testing.T) {
	left := sine(1000, 0.6, 44100, 1)
	right := sine(2000, 0.4, 44100, 1)
	pcm, err := Decode(makeWAV(t, wavSpecs[1], 44100, left, right))
	if err != nil {
		t.Fatal(err)
	}
	mid := pcm.Samples[pcm.Rate/4 : 3*pcm.Rate/4]
	if a := goertzel(mid, 1000, pcm.Rate); math.Abs(dB(a/0.3)) > 0.2 {
		t.Errorf("left tone amplitude %.4f, want 0.3", a)
	}
	if a := goertzel(mid, 2000, pcm.Rate); math.Abs(dB(a/0.2)) > 0.2 {
		t.Errorf("right tone amplitude %.4f, want 0.2", a)
	}
}

func TestDecodeWAV8BitIsUnsigned(t *testing.T) {
	// 8-bit WAV silence is 0x80.
	data := makeWAV(t, wavSpec{"pcm8", wavPCM, 8, false}, 8000, make([]float64, 800))
	pcm, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range pcm.Samples {
		if v != 0 {
			t.Fatalf("sample %d = %d, want silence", i, v)
		}
	}
}

func TestDecodeWAVStreamingSizes(t *testing.T) {
	// espeak-ng --stdout and other streaming writers leave 0x7ffff... sizes.
	data := makeWAV(t, wavSpecs[1], 22050, sine(1000, 0.5, 22050, 1))
	binary.LittleEndian.PutUint32(data[4:], 0x7ffff024)
	binary.LittleEndian.PutUint32(data[40:], 0x7ffff000)
	data = append(data, 0x12) // half a sample at the end
	pcm, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pcm.Samples); pcm.Rate != 48000 || n < 47990 || n > 48010 {
		t.Errorf("%d samples at %d Hz, want about 48000 at 48000", n, pcm.Rate)
	}
	checkTone(t, pcm, 1000, 0.5, 0.2)
}

func TestDecodeWAVExtraChunks(t *testing.T) {
	base := makeWAV(t, wavSpecs[1], 8000, sine(1000, 0.5, 8000, 1))
	// Insert an odd-sized LIST chunk (padded to even) before "data".
	var b bytes.Buffer
	b.Write(base[:36])
	b.WriteString("LIST")
	binary.Write(&b, binary.LittleEndian, uint32(5))
	b.Write([]byte("INFO\x00\x00")) // 5 bytes + pad
	b.Write(base[36:])
	pcm, err := Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm.Samples) != 8000 || pcm.Rate != 8000 {
		t.Errorf("%d samples at %d Hz, want 8000 at 8000", len(pcm.Samples), pcm.Rate)
	}
	checkTone(t, pcm, 1000, 0.5, 0.1)
}

func TestDecodeMP3(t *testing.T) {
	for _, c := range []struct {
		name string
		rate int // of the MP3 (the second is MPEG-2 at 16 kHz)
	}{{"tone1k_44k_id3.mp3", 48000}, {"tone1k_22k_stereo.mp3", 16000}} {
		name := c.name
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			pcm, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			// 1 s plus encoder delay and padding.
			if d := pcm.Duration(); pcm.Rate != c.rate || d < time.Second || d > 1200*time.Millisecond {
				t.Errorf("%d samples at %d Hz (%s), want 1 s to 1.2 s at %d Hz", len(pcm.Samples), pcm.Rate, d, c.rate)
			}
			checkTone(t, pcm, 1000, 0.5, 1.0)
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	pcm16 := wavSpecs[1]
	good := makeWAV(t, pcm16, 8000, sine(1000, 0.5, 8000, 0.1))
	noFmt := append([]byte("RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00"), 1, 2, 3, 4)
	noData := good[:36]
	adpcm := bytes.Clone(good)
	binary.LittleEndian.PutUint16(adpcm[20:], 2) // MS ADPCM
	badRate := bytes.Clone(good)
	binary.LittleEndian.PutUint32(badRate[24:], 0)
	zeroCh := bytes.Clone(good)
	binary.LittleEndian.PutUint16(zeroCh[22:], 0)
	emptyData := makeWAV(t, pcm16, 8000, []float64{})
	mp2 := []byte{0xFF, 0xFD, 0x90, 0x00, 0, 0, 0, 0} // MPEG-1 Layer II
	id3Huge := []byte("ID3\x04\x00\x00\x7f\x7f\x7f\x7f")
	id3Only := []byte("ID3\x04\x00\x00\x00\x00\x00\x00")
	id3Garbage := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), bytes.Repeat([]byte("not an mp3 frame "), 100)...)

	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"nil", nil, ErrEmpty},
		{"text", []byte("hello, this is not audio"), ErrUnsupportedFormat},
		{"html", []byte("<!DOCTYPE html><html>404</html>"), ErrUnsupportedFormat},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ErrUnsupportedFormat},
		{"riff-avi", []byte("RIFF\x00\x00\x00\x00AVI LIST"), ErrUnsupportedFormat},
		{"wav-no-fmt", noFmt, ErrMalformed},
		{"wav-no-data", noData, ErrMalformed},
		{"wav-header-only", good[:12], ErrMalformed},
		{"wav-adpcm", adpcm, ErrUnsupportedFormat},
		{"wav-rate-0", badRate, ErrUnsupportedFormat},
		{"wav-0-channels", zeroCh, ErrMalformed},
		{"wav-empty-data", emptyData, ErrEmpty},
		{"mp2", mp2, ErrUnsupportedFormat},
		{"id3-huge-size", id3Huge, ErrMalformed},
		{"id3-only", id3Only, ErrEmpty},
		{"id3-garbage", id3Garbage, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pcm, err := Decode(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %d samples, %v; want %v", len(pcm.Samples), err, tc.want)
			}
		})
	}
}

func TestDecodeLimit(t *testing.T) {
	data := makeWAV(t, wavSpecs[1], 44100, sine(1000, 0.5, 44100, 2))
	if _, err := DecodeLimit(data, time.Second, 0); !errors.Is(err, ErrTooLong) {
		t.Errorf("2 s WAV with a 1 s limit: %v, want ErrTooLong", err)
	}
	pcm, err := DecodeLimit(data, 3*time.Second, 0)
	if err != nil || len(pcm.Samples) != 96000 || pcm.Rate != 48000 {
		t.Errorf("2 s WAV at 44.1 kHz with a 3 s limit: %d samples at %d Hz, %v; want 2 s at 48 kHz", len(pcm.Samples), pcm.Rate, err)
	}
	// The rate cap (speech): 44.1 kHz to 16 kHz, the band to 8 kHz.
	pcm, err = DecodeLimit(data, 0, 16000)
	if err != nil || len(pcm.Samples) != 32000 || pcm.Rate != 16000 {
		t.Errorf("2 s WAV at 44.1 kHz capped at 16 kHz: %d samples at %d Hz, %v", len(pcm.Samples), pcm.Rate, err)
	}
	checkTone(t, pcm, 1000, 0.5, 0.2)
	mp3, err := os.ReadFile("testdata/tone1k_44k_id3.mp3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeLimit(mp3, 500*time.Millisecond, 0); !errors.Is(err, ErrTooLong) {
		t.Errorf("1 s MP3 with a 0.5 s limit: %v, want ErrTooLong", err)
	}
	long := makeWAV(t, wavSpec{"mulaw", wavMuLaw, 8, false}, 8000, make([]float64, (DefaultMaxSeconds+1)*8000))
	if _, err := Decode(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("%d s WAV: %v, want ErrTooLong", DefaultMaxSeconds+1, err)
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	data := makeWAV(t, wavSpecs[1], 8000, sine(1000, 0.5, 8000, 0.1))
	pcm, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(data)
	for i := range pcm.Samples {
		pcm.Samples[i] = 0
	}
	if !bytes.Equal(orig, data) {
		t.Fatal("writing to the result changed the input")
	}
}

package audiofile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// nb is the narrowband rate these tests resample to, as Decode did for
// every file before it kept their band.
const nb = 8000

func resampleAll(in []float64, rate int) []int16 {
	x := make([]float32, len(in))
	for i, v := range in {
		x[i] = float32(v)
	}
	r := newResampler(rate, nb)
	return r.flush(r.write(x, nil))
}

func TestResample3kHzTone(t *testing.T) {
	out := resampleAll(sine(3000, 0.5, 44100, 1), 44100)
	if len(out) != 8000 {
		t.Fatalf("%d samples, want 8000", len(out))
	}
	checkTone(t, Audio{Samples: out, Rate: nb}, 3000, 0.5, 0.1)
	mid := out[2000:6000]
	t.Logf("3 kHz at 44.1 kHz -> %.3f dB", dB(goertzel(mid, 3000, nb)/0.5))
}

func TestResampleRejectsAboveNyquist(t *testing.T) {
	// A 6 kHz tone would alias to 2 kHz if decimated naively.
	for _, rate := range []int{44100, 48000, 22050, 16000, 32000, 24000, 11025} {
		for _, freq := range []float64{4400, 5000, 6000, 7000, 10000} {
			if freq >= float64(rate)/2 {
				continue
			}
			t.Run(fmt.Sprintf("%d/%g", rate, freq), func(t *testing.T) {
				out := resampleAll(sine(freq, 0.5, rate, 1), rate)
				// All-zero output (+Inf dB) means below int16 resolution.
				att := -dB(rms(out[1000:7000]) / (0.5 / math.Sqrt2))
				if att < 60 {
					t.Errorf("%g Hz at %d Hz attenuated %.1f dB, want > 60", freq, rate, att)
				}
				if rate == 44100 && freq == 6000 {
					t.Logf("6 kHz at 44.1 kHz attenuated %.1f dB (+Inf: below 1 LSB)", att)
				}
			})
		}
	}
}

func TestResamplePassband(t *testing.T) {
	for _, rate := range []int{11025, 16000, 22050, 44100, 48000} {
		for _, freq := range []float64{300, 1000, 2000, 3000, 3400} {
			out := resampleAll(sine(freq, 0.5, rate, 1), rate)
			// 4000 samples hold whole cycles of every probe frequency here.
			a := goertzel(out[2000:6000], freq, nb)
			if d := dB(a / 0.5); math.Abs(d) > 0.1 {
				t.Errorf("%g Hz at %d Hz: %.3f dB", freq, rate, d)
			}
		}
	}
}

func TestResampleUp(t *testing.T) {
	out := resampleAll(sine(1000, 0.5, 6000, 1), 6000)
	if len(out) != 8000 {
		t.Fatalf("%d samples, want 8000", len(out))
	}
	checkTone(t, Audio{Samples: out, Rate: nb}, 1000, 0.5, 0.1)
}

func TestResampleOddRate(t *testing.T) {
	// gcd(44101, 8000) = 1: the filter phases are rounded (see resampler).
	out := resampleAll(sine(1000, 0.5, 44101, 1), 44101)
	if len(out) != 8000 {
		t.Fatalf("%d samples, want 8000", len(out))
	}
	mid := out[2000:6000]
	if a := goertzel(mid, 1000.0*44100/44101, nb); math.Abs(dB(a/0.5)) > 0.1 {
		t.Errorf("level %.3f dB", dB(a/0.5))
	}
}

func TestResampleStreamingMatchesOneShot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]float32, 44100)
	for i := range in {
		in[i] = float32(rng.Float64()*2 - 1)
	}
	for _, rate := range []int{44100, 48000, 11025} {
		r := newResampler(rate, nb)
		want := r.flush(r.write(in, nil))
		r = newResampler(rate, nb)
		var got []int16
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(9000))
			got = r.write(rest[:n], got)
			rest = rest[n:]
		}
		got = r.flush(got)
		if !slices.Equal(got, want) {
			t.Errorf("%d Hz: chunked output differs from one-shot (%d vs %d samples)", rate, len(got), len(want))
		}
		if int64(len(want)) != outputLen(int64(len(in)), rate, nb) {
			t.Errorf("%d Hz: %d samples, outputLen says %d", rate, len(want), outputLen(int64(len(in)), rate, nb))
		}
	}
}

func BenchmarkResample44100(b *testing.B) {
	in := make([]float32, 44100)
	for i := range in {
		in[i] = float32(math.Sin(float64(i)))
	}
	b.ReportAllocs()
	for b.Loop() {
		r := newResampler(44100, nb)
		r.flush(r.write(in, nil))
	}
}

// TestResampleWideband: toward 16 and 48 kHz the band is kept: a 6 kHz
// tone from 22.05 kHz to 16 kHz, 15 kHz from 44.1 to 48 kHz, 9 kHz from
// 22.05 to 48 kHz pass at their level, and what lies past the lower rate's
// Nyquist frequency (7.5 kHz from 11.025 kHz up to 16 kHz: its image at
// 8.5 kHz; 9 kHz from 22.05 down to 16 kHz) is gone.
func TestResampleWideband(t *testing.T) {
	for _, c := range []struct {
		from, to int
		freq     float64
		pass     bool
	}{
		{22050, 16000, 6000, true},
		{44100, 48000, 15000, true},
		{22050, 48000, 9000, true},
		{11025, 16000, 4500, true},
		{22050, 16000, 9000, false},
	} {
		x := make([]float32, c.from)
		for i, v := range sine(c.freq, 0.5, c.from, 1) {
			x[i] = float32(v)
		}
		r := newResampler(c.from, c.to)
		out := r.flush(r.write(x, nil))
		if int64(len(out)) != outputLen(int64(len(x)), c.from, c.to) {
			t.Errorf("%d to %d Hz: %d samples, outputLen says %d", c.from, c.to, len(out), outputLen(int64(len(x)), c.from, c.to))
		}
		mid := out[c.to/4 : 3*c.to/4]
		if c.pass {
			if d := dB(goertzel(mid, c.freq, c.to) / 0.5); math.Abs(d) > 0.1 {
				t.Errorf("%g Hz from %d to %d Hz: %.3f dB", c.freq, c.from, c.to, d)
			}
			continue
		}
		if att := -dB(rms(mid) / (0.5 / math.Sqrt2)); att < 60 {
			t.Errorf("%g Hz from %d to %d Hz attenuated %.1f dB, want > 60", c.freq, c.from, c.to, att)
		}
	}
}

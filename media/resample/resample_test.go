package resample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"chorus/internal/audiotest"
)

// pairs are every conversion the package makes, identity included.
var pairs = [][2]int{
	{16000, 8000}, {8000, 16000},
	{48000, 16000}, {16000, 48000},
	{48000, 8000}, {8000, 48000},
	{8000, 8000}, {16000, 16000}, {48000, 48000},
}

// convert runs a tone of freq Hz at level dBFS through from→to in 20 ms
// frames for dur seconds and returns the output.
func convert(t testing.TB, from, to int, freq, level, dur float64) []int16 {
	t.Helper()
	r, err := New(from, to)
	if err != nil {
		t.Fatal(err)
	}
	var phase float64
	src := make([]int16, from/50)
	frame := make([]int16, to/50)
	var out []int16
	for range int(dur * 50) {
		audiotest.Tone(src, freq, level, from, &phase)
		if n := r.Process(frame, src); n != len(frame) {
			t.Fatalf("%d→%d: Process wrote %d samples, want %d", from, to, n, len(frame))
		}
		out = append(out, frame...)
	}
	return out
}

// settled drops the first 20 ms of an output at rate, where the filter is
// still filling.
func settled(x []int16, rate int) []int16 { return x[rate/50:] }

func TestNewRejectsRates(t *testing.T) {
	for _, p := range [][2]int{{8000, 44100}, {0, 8000}, {16000, -1}, {32000, 16000}, {12000, 48000}} {
		if _, err := New(p[0], p[1]); !errors.Is(err, ErrRate) {
			t.Errorf("New(%d, %d) = %v, want ErrRate", p[0], p[1], err)
		}
	}
}

// TestFrameLengths documents the lengths of a 20 ms frame and checks
// OutLen.
func TestFrameLengths(t *testing.T) {
	frame := map[int]int{8000: 160, 16000: 320, 48000: 960}
	for _, p := range pairs {
		r, err := New(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := r.OutLen(frame[p[0]]); got != frame[p[1]] {
			t.Errorf("%d→%d: OutLen(%d) = %d, want %d", p[0], p[1], frame[p[0]], got, frame[p[1]])
		}
		if r.From() != p[0] || r.To() != p[1] {
			t.Errorf("From, To = %d, %d; want %d, %d", r.From(), r.To(), p[0], p[1])
		}
	}
}

// TestDelay checks that every path delays a tone by exactly Delay: the
// output matches the input sine shifted by Delay, sample by sample.
func TestDelay(t *testing.T) {
	for _, p := range pairs {
		for _, freq := range []float64{440, 1000, 2500} {
			out := settled(convert(t, p[0], p[1], freq, -6, 0.2), p[1])
			amp := audiotest.FullScale * math.Pow(10, -6.0/20)
			var worst float64
			for i, v := range out {
				t0 := float64(i+p[1]/50)/float64(p[1]) - Delay.Seconds()
				want := amp * math.Sin(2*math.Pi*freq*t0)
				worst = max(worst, math.Abs(float64(v)-want))
			}
			// 0.2 % of the amplitude: −54 dB, well below any audible error,
			// where a delay off by one 48 kHz sample would give 4 %.
			if worst > 0.002*amp {
				t.Errorf("%d→%d, %g Hz: output differs from the input delayed by %v by up to %.0f (%.2f %% of the amplitude)",
					p[0], p[1], freq, Delay, worst, 100*worst/amp)
			}
		}
	}
}

// passTop is where the pass band of a conversion ends: 3.4 kHz whenever
// 8 kHz is one of the rates, else 7 kHz.
func passTop(from, to int) float64 {
	if min(from, to) == 8000 {
		return 3400
	}
	return 7000
}

// TestPassband checks tones across the pass band come out at their level
// ± 0.5 dB through every conversion.
func TestPassband(t *testing.T) {
	for _, p := range pairs {
		if p[0] == p[1] {
			continue
		}
		top := passTop(p[0], p[1])
		var worst float64
		for _, freq := range []float64{100, 300, 1000, 2000, 3000, 3400, 5000, 6000, 6500, 7000} {
			if freq > top {
				continue
			}
			out := settled(convert(t, p[0], p[1], freq, -6, 0.5), p[1])
			got := audiotest.LevelDBFS(out, freq, p[1]) + 6
			worst = max(worst, math.Abs(got))
			if math.Abs(got) > 0.5 {
				t.Errorf("%d→%d: %g Hz comes out %+.2f dB", p[0], p[1], freq, got)
			}
		}
		t.Logf("%d→%d: pass band to %g Hz within ±%.3f dB", p[0], p[1], top, worst)
	}
}

// TestNoAlias checks that going down to 8 kHz removes 4–8 kHz and above:
// a 6 kHz tone at 16 or 48 kHz leaves nothing at 8 kHz, least of all at its
// alias, 2 kHz. It then sweeps the whole stop band of every down
// conversion and reports the least attenuation found.
func TestNoAlias(t *testing.T) {
	for _, from := range []int{16000, 48000} {
		out := settled(convert(t, from, 8000, 6000, 0, 0.5), 8000)
		if l := audiotest.RMSDBFS(out); l > -60 {
			t.Errorf("%d→8000: 6 kHz at 0 dBFS leaves %.1f dBFS, want below -60", from, l)
		}
		if l := audiotest.LevelDBFS(out, 2000, 8000); l > -60 {
			t.Errorf("%d→8000: 6 kHz at 0 dBFS aliases to 2 kHz at %.1f dBFS, want below -60", from, l)
		}
		t.Logf("%d→8000: 6 kHz at 0 dBFS leaves %.1f dBFS in all, %.1f dBFS at 2 kHz",
			from, audiotest.RMSDBFS(out), audiotest.LevelDBFS(out, 2000, 8000))
	}
	for _, p := range [][2]int{{16000, 8000}, {48000, 8000}, {48000, 16000}} {
		from, to := p[0], p[1]
		worst, at := 0.0, 0.0
		for freq := float64(to) / 2; freq < float64(from)/2; freq += 50 {
			out := settled(convert(t, from, to, freq, 0, 0.2), to)
			l := audiotest.RMSDBFS(out)
			if l > worst || at == 0 {
				worst, at = l, freq
			}
		}
		if worst > -60 {
			t.Errorf("%d→%d: a 0 dBFS tone at %g Hz leaves %.1f dBFS, want below -60", from, to, at, worst)
		}
		t.Logf("%d→%d: stop band from %d Hz attenuated at least %.1f dB (worst at %g Hz)", from, to, to/2, -worst, at)
	}
}

// TestNoImages checks that going up leaves no images: a tone at f at the
// low rate must not appear at k·from ± f at the high rate.
func TestNoImages(t *testing.T) {
	for _, p := range [][2]int{{8000, 16000}, {8000, 48000}, {16000, 48000}} {
		from, to := p[0], p[1]
		worst := math.Inf(-1)
		var worstAt string
		for _, freq := range []float64{300, 1000, 2000, 3400, 5000, 7000} {
			if freq > passTop(from, to) {
				continue
			}
			out := settled(convert(t, from, to, freq, -6, 0.5), to)
			ref := audiotest.LevelDBFS(out, freq, to)
			for k := from; k < to; k += from {
				for _, img := range []float64{float64(k) - freq, float64(k) + freq} {
					if img >= float64(to)/2 {
						continue
					}
					rel := audiotest.LevelDBFS(out, img, to) - ref
					if rel > worst {
						worst, worstAt = rel, fmt.Sprintf("%g Hz (tone %g Hz)", img, freq)
					}
					if rel > -60 {
						t.Errorf("%d→%d: %g Hz tone has an image at %g Hz %.1f dB below it, want 60", from, to, freq, img, -rel)
					}
				}
			}
		}
		t.Logf("%d→%d: images at least %.1f dB below the tone (worst %s)", from, to, -worst, worstAt)
	}
}

// TestFramesEqualBlock checks that the state carries across frames: noise
// converted in frames of 20 ms, 10 ms and odd sizes equals the same noise
// converted in one call.
func TestFramesEqualBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, p := range pairs {
		r, _ := New(p[0], p[1])
		src := make([]int16, p[0]) // one second
		audiotest.Noise(src, -10, rng)
		whole := make([]int16, r.OutLen(len(src)))
		if n := r.Process(whole, src); n != len(whole) {
			t.Fatalf("%d→%d: whole: %d samples, want %d", p[0], p[1], n, len(whole))
		}
		r.Reset()
		var framed []int16
		buf := make([]int16, p[1])
		m := r.InMultiple()
		for off := 0; off < len(src); {
			size := []int{p[0] / 50, p[0] / 100, 7 * m, m, 333 * m}[rng.IntN(5)]
			size = min(size, len(src)-off)
			n := r.Process(buf, src[off:off+size])
			framed = append(framed, buf[:n]...)
			off += size
		}
		if len(framed) != len(whole) {
			t.Fatalf("%d→%d: framed gave %d samples, whole %d", p[0], p[1], len(framed), len(whole))
		}
		for i := range whole {
			if d := int(framed[i]) - int(whole[i]); d > 1 || d < -1 {
				t.Fatalf("%d→%d: sample %d is %d in frames, %d in one block", p[0], p[1], i, framed[i], whole[i])
			}
		}
	}
}

// TestReset checks that after Reset a resampler converts as a new one.
func TestReset(t *testing.T) {
	r, _ := New(8000, 48000)
	fresh, _ := New(8000, 48000)
	src := make([]int16, 160)
	audiotest.Tone(src, 1000, -3, 8000, nil)
	a, b := make([]int16, 960), make([]int16, 960)
	r.Process(a, src)
	r.Process(a, src)
	r.Reset()
	r.Process(a, src)
	fresh.Process(b, src)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("after Reset sample %d is %d, a new resampler gives %d", i, a[i], b[i])
		}
	}
}

// TestWrongLengths checks that lengths Process cannot use are not used and
// never panic: too short a dst, src not a multiple of InMultiple, empty
// slices.
func TestWrongLengths(t *testing.T) {
	r, _ := New(48000, 8000)
	if n := r.Process(make([]int16, 100), make([]int16, 960)); n != 100 {
		t.Errorf("dst of 100: wrote %d, want 100", n)
	}
	if n := r.Process(make([]int16, 160), make([]int16, 965)); n != 160 {
		t.Errorf("src of 965 at 48→8 kHz: wrote %d, want 160", n)
	}
	if n := r.Process(nil, make([]int16, 960)); n != 0 {
		t.Errorf("nil dst: wrote %d", n)
	}
	if n := r.Process(make([]int16, 160), nil); n != 0 {
		t.Errorf("nil src: wrote %d", n)
	}
}

// TestSaturation checks that a full-scale square wave, whose filtered
// peaks overshoot int16, is clipped rather than wrapped.
func TestSaturation(t *testing.T) {
	for _, p := range pairs {
		if p[0] == p[1] {
			continue // a delay line has no overshoot to clip
		}
		r, _ := New(p[0], p[1])
		src := make([]int16, p[0]/50)
		for i := range src {
			src[i] = 32767
			if (i/(p[0]/1000))%2 == 1 {
				src[i] = -32768
			}
		}
		dst := make([]int16, p[1]/50)
		for range 5 {
			r.Process(dst, src)
		}
		// A wrapped sample would flip sign inside a half period of the
		// 500 Hz square wave; clipped ones never leave the half period's
		// sign except around its edges.
		var flips int
		for i := 1; i < len(dst); i++ {
			if (dst[i] > 16384 && dst[i-1] < -16384) || (dst[i] < -16384 && dst[i-1] > 16384) {
				flips++
			}
		}
		if flips > 0 {
			t.Errorf("%d→%d: %d jumps across full scale: wrapped samples", p[0], p[1], flips)
		}
	}
}

// TestAllocs checks that converting, priming and crossfading allocate
// nothing.
func TestAllocs(t *testing.T) {
	for _, p := range pairs {
		r, _ := New(p[0], p[1])
		src := make([]int16, p[0]/50)
		dst := make([]int16, p[1]/50)
		audiotest.Tone(src, 1000, -10, p[0], nil)
		if a := testing.AllocsPerRun(100, func() {
			r.Process(dst, src)
			r.Prime(src)
			Crossfade(dst, dst, dst, p[1])
		}); a != 0 {
			t.Errorf("%d→%d: %.1f allocations per frame", p[0], p[1], a)
		}
	}
}

// TestSymmetryUsed checks that every filter stage of every conversion
// takes the halved-multiplication path that the benchmarks were measured
// with, not the plain inner product kept for other designs.
func TestSymmetryUsed(t *testing.T) {
	for _, p := range pairs {
		r, _ := New(p[0], p[1])
		for i, s := range r.stages {
			covered := 0
			for _, pl := range s.plans {
				switch pl.kind {
				case planPlain:
					t.Errorf("%d→%d stage %d: branch %d has no symmetry", p[0], p[1], i, pl.p)
				case planPair:
					covered += 2
				default:
					covered++
				}
			}
			if s.up > 1 && covered != s.up {
				t.Errorf("%d→%d stage %d: plans cover %d of %d branches", p[0], p[1], i, covered, s.up)
			}
		}
	}
}

// TestPrime checks that priming with a frame leaves the resampler where
// converting that frame would: the next frame comes out the same.
func TestPrime(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range pairs {
		a, _ := New(p[0], p[1])
		b, _ := New(p[0], p[1])
		first, second := make([]int16, p[0]/50), make([]int16, p[0]/50)
		audiotest.Noise(first, -10, rng)
		audiotest.Noise(second, -10, rng)
		outA, outB := make([]int16, p[1]/50), make([]int16, p[1]/50)
		a.Process(outA, first)
		a.Process(outA, second)
		b.Prime(first)
		b.Process(outB, second)
		for i := range outA {
			if outA[i] != outB[i] {
				t.Fatalf("%d→%d: sample %d after Prime is %d, after Process %d", p[0], p[1], i, outB[i], outA[i])
			}
		}
	}
}

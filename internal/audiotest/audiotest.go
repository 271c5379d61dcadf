// Package audiotest generates and analyses 16-bit PCM test signals: sine
// tones, white noise, Goertzel tone levels and RMS levels, all in dBFS.
//
// Level convention: a full-scale sine (peak 32767) is 0 dBFS, both for
// [LevelDBFS] (the level of one frequency) and for [RMSDBFS] (the level of the
// whole signal). A sine of peak A therefore reads 20·log10(A/32767) with
// either function, and white noise made by [Noise] at −20 dBFS reads −20 dBFS
// with [RMSDBFS].
package audiotest

import (
	"math"
	"math/rand/v2"
	"sort"
)

// FullScale is the peak amplitude of a 0 dBFS sine.
const FullScale = 32767.0

// Silence is the level reported for a signal with no energy at all.
const Silence = -200.0

// Tone fills dst with a sine of freqHz at dBFS (peak level; 0 dBFS is a
// full-scale sine), sampled at sampleRate. phase carries the oscillator
// phase in radians between calls so consecutive buffers join without a
// click; it may be nil for a tone that starts at phase 0.
func Tone(dst []int16, freqHz, dBFS float64, sampleRate int, phase *float64) {
	var ph float64
	if phase != nil {
		ph = *phase
	}
	amp := FullScale * math.Pow(10, dBFS/20)
	step := 2 * math.Pi * freqHz / float64(sampleRate)
	for i := range dst {
		dst[i] = clip16(amp * math.Sin(ph))
		ph += step
		if ph >= 2*math.Pi {
			ph -= 2 * math.Pi
		}
	}
	if phase != nil {
		*phase = ph
	}
}

// ToneSource returns a source function (as used by a test phone) that
// produces a continuous sine of freqHz at dBFS. The returned function keeps
// its own phase and must not be called concurrently.
func ToneSource(freqHz, dBFS float64, sampleRate int) func(dst []int16) {
	var phase float64
	return func(dst []int16) { Tone(dst, freqHz, dBFS, sampleRate, &phase) }
}

// Noise fills dst with Gaussian white noise whose RMS level is dBFS (on the
// same scale as [RMSDBFS]). Samples beyond int16 range are clipped, so levels
// near 0 dBFS read slightly low.
func Noise(dst []int16, dBFS float64, rng *rand.Rand) {
	sigma := FullScale / math.Sqrt2 * math.Pow(10, dBFS/20)
	for i := range dst {
		dst[i] = clip16(rng.NormFloat64() * sigma)
	}
}

// RMSDBFS returns the RMS level of samples in dBFS, where a full-scale sine
// reads 0 dBFS. An empty or all-zero input returns [Silence] (−200).
func RMSDBFS(samples []int16) float64 {
	if len(samples) == 0 {
		return Silence
	}
	var sum float64
	for _, s := range samples {
		v := float64(s)
		sum += v * v
	}
	if sum == 0 {
		return Silence
	}
	rms := math.Sqrt(sum / float64(len(samples)))
	return dB(rms * math.Sqrt2 / FullScale)
}

// LevelDBFS returns the level of the sine component at freqHz in samples,
// in dBFS (a full-scale sine at freqHz reads 0 dBFS). It runs the Goertzel
// algorithm over a Hann-windowed copy of the input and corrects for the
// window's coherent gain, so tones more than a few bins away
// (sampleRate/len(samples) Hz per bin) do not leak into the result. It
// returns [Silence] for an empty input or one with no energy at freqHz.
func LevelDBFS(samples []int16, freqHz float64, sampleRate int) float64 {
	n := len(samples)
	if n == 0 {
		return Silence
	}
	w := 2 * math.Pi * freqHz / float64(sampleRate)
	coeff := 2 * math.Cos(w)
	var s1, s2, wsum float64
	for i, x := range samples {
		win := hann(i, n)
		wsum += win
		s0 := float64(x)*win + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if wsum == 0 {
		return Silence
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	if power <= 0 {
		return Silence
	}
	// A sine of peak A gives |X| ≈ A/2 · Σw at its own frequency.
	amp := 2 * math.Sqrt(power) / wsum
	return dB(amp / FullScale)
}

// hann is the periodic Hann window of length n at index i; for n==1 it is 1.
func hann(i, n int) float64 {
	if n == 1 {
		return 1
	}
	return 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
}

func dB(ratio float64) float64 {
	if ratio <= 0 {
		return Silence
	}
	v := 20 * math.Log10(ratio)
	if v < Silence {
		return Silence
	}
	return v
}

func clip16(v float64) int16 {
	v = math.Round(v)
	switch {
	case v > math.MaxInt16:
		return math.MaxInt16
	case v < math.MinInt16:
		return math.MinInt16
	}
	return int16(v)
}

// MedianLevelDBFS splits samples into blocks of blockSamples and returns
// the median of the blocks' LevelDBFS at freqHz. A loaded test machine can
// delay a packet or two, leaving a short gap in a recording; the median
// reads the level the listener heard most of the time, unmoved by such
// gaps, where a level over the whole window would dip.
func MedianLevelDBFS(samples []int16, freqHz float64, sampleRate, blockSamples int) float64 {
	if blockSamples <= 0 || len(samples) < blockSamples {
		return LevelDBFS(samples, freqHz, sampleRate)
	}
	levels := make([]float64, 0, len(samples)/blockSamples)
	for i := 0; i+blockSamples <= len(samples); i += blockSamples {
		levels = append(levels, LevelDBFS(samples[i:i+blockSamples], freqHz, sampleRate))
	}
	sort.Float64s(levels)
	return levels[len(levels)/2]
}

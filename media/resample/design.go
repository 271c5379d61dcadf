package resample

import "math"

// Filter design. Every filter is a linear-phase low-pass FIR, a windowed
// sinc with a Kaiser window, whose length comes from Kaiser's formula for
// the transition band and the attenuation below. Linear phase keeps the
// waveform's shape (speech and tones come out only delayed), and the
// delays of all paths can then be made equal (see Delay), which is what
// lets a room change rate without a click.
const (
	// attenuation is the Kaiser design target in dB. The issue asks for
	// 60 dB in the stop band; 65 leaves room for the float32 taps and for
	// the formula's optimism. The measured figures are in the tests.
	attenuation = 65.0

	// Narrowband: pass to the top of the telephone band, stop from 4 kHz,
	// the Nyquist frequency of 8 kHz audio, so nothing from 4–8 kHz folds
	// back into what a G.711 listener hears.
	nbPass, nbStop = 3400.0, 4000.0
	// Wideband: flat to 7 kHz (G.722's band), stop from 8 kHz.
	wbPass, wbStop = 7000.0, 8000.0
	// The 48 kHz ↔ 16 kHz stage of the 8 ↔ 48 kHz cascade only keeps
	// 0–4 kHz (the 2:1 stage at 16 kHz does the sharp cut): what folds
	// onto 0–4 kHz when 48 kHz is decimated by 3 lies at 12–20 kHz, and
	// the images of 0–4 kHz up-sampled by 3 lie there too.
	cascadePass, cascadeStop = 4000.0, 12000.0
)

// lowpass designs a Kaiser-windowed sinc low-pass filter for sampleRate
// with the given band edges (Hz). Its length is 2·half+1 where half is the
// smallest multiple of factor that meets the attenuation target, so the
// filter's delay of half samples is a whole number of samples at the lower
// rate of the pair too. The taps sum to 1 (unity gain at DC).
func lowpass(sampleRate, pass, stop float64, factor int) []float64 {
	dw := 2 * math.Pi * (stop - pass) / sampleRate
	length := (attenuation - 7.95) / (2.285 * dw) // N-1 in Kaiser's formula
	half := int(math.Ceil(length / 2))
	half = (half + factor - 1) / factor * factor
	fc := (pass + stop) / 2 / sampleRate // cut-off, cycles per sample
	beta := 0.1102 * (attenuation - 8.7) // Kaiser's β for attenuation > 50 dB
	i0beta := besselI0(beta)
	h := make([]float64, 2*half+1)
	var sum float64
	for k := range h {
		t := float64(k - half)
		u := t / float64(half)
		x := 2 * fc * t
		s := 1.0
		if x != 0 {
			s = math.Sin(math.Pi*x) / (math.Pi * x)
		}
		h[k] = 2 * fc * s * besselI0(beta*math.Sqrt(max(0, 1-u*u))) / i0beta
		sum += h[k]
	}
	for k := range h {
		h[k] /= sum
	}
	return h
}

// besselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (converges quickly for the β used here, about 6).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	q := x * x / 4
	for k := 1; k < 100; k++ {
		term *= q / float64(k*k)
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return sum
}

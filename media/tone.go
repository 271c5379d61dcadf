package media

import "math"

// Tone renders a sine of freqHz at level dBFS (a full-scale sine is 0 dBFS)
// lasting ms milliseconds at ClockRate, with 5 ms raised-cosine ramps at both
// ends so that it starts and stops without a click. It is meant for short
// prompts such as join and leave beeps, rendered once and then played.
func Tone(freqHz, dBFS float64, ms int) []int16 {
	n := ClockRate * ms / 1000
	out := make([]int16, n)
	amp := 32767 * math.Pow(10, dBFS/20)
	ramp := ClockRate * 5 / 1000
	for i := range out {
		g := 1.0
		if i < ramp {
			g = 0.5 - 0.5*math.Cos(math.Pi*float64(i)/float64(ramp))
		} else if n-1-i < ramp {
			g = 0.5 - 0.5*math.Cos(math.Pi*float64(n-1-i)/float64(ramp))
		}
		out[i] = int16(math.Round(amp * g * math.Sin(2*math.Pi*freqHz*float64(i)/ClockRate)))
	}
	return out
}

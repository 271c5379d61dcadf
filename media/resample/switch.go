package resample

import "math"

// Crossfade joins two conversions of the same frame, from the path in use
// (prev) and from the path that replaces it (next), into dst: prev alone
// while next, started cold in this frame, is still filling (the first
// 2·Delay, 7.25 ms), then a raised-cosine fade that ends on next alone at
// the last sample. Both must come from paths of the same Delay (every
// Resampler), so they carry the same audio at the same time and the fade
// changes only the band, never the phase. dst may be prev or next. rate is
// their sample rate; frames of 20 ms give a 12.75 ms fade, frames shorter
// than 14.5 ms fade over their second half. See the package comment for
// where a media endpoint calls it.
func Crossfade(dst, prev, next []int16, rate int) {
	n := min(len(dst), len(prev), len(next))
	start := (2*delayTicks*rate + 47999) / 48000
	start = max(0, min(start, n/2)) // a nonsense rate must not panic
	copy(dst[:start], prev[:start])
	span := float64(n - start)
	for i := start; i < n; i++ {
		w := 0.5 - 0.5*math.Cos(math.Pi*float64(i-start+1)/span)
		v := math.Round(float64(prev[i])*(1-w) + float64(next[i])*w)
		dst[i] = int16(max(-32768, min(32767, v)))
	}
}

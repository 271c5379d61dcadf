package audiofile

import (
	"fmt"
	"math"
)

// Filter design of the resampler. The stop band starts at half the lower of
// the two rates (4 kHz when going down to 8 kHz, 8 kHz down to 16 kHz) and
// the pass band ends at passFraction of that (3.4 kHz, the top of the
// telephone band; 6.8 kHz; 18.7 kHz from 44.1 to 48 kHz).
const (
	passFraction = 0.85
	stopAtten    = 80.0    // dB, Kaiser design target
	maxTaps      = 1 << 16 // cap on the filter table for odd rate ratios
	minRate      = 1000
	maxRate      = 384000
)

// resampler converts a mono float32 stream from inRate to outRate with a
// Kaiser-windowed sinc low-pass filter in polyphase form. Output sample n
// sits at input time t = n*down/up; it is the dot product of the input
// around t with the filter branch for t's fractional part. Every common
// rate gets one branch per distinct fractional part (up of them). Odd rates
// whose table would pass maxTaps get fewer branches and t's fractional
// part is rounded to the nearest; at 44101 Hz that is 177 branches and an
// error 57 dB below a 3.4 kHz tone.
type resampler struct {
	up, down int64 // outRate/inRate = up/down, in lowest terms
	phases   int64 // filter branches: up, or fewer if the table would be too big
	width    int   // taps per branch (2*half)
	half     int64
	taps     []float32 // phases*width, branch-major

	buf   []float32 // pending input; buf[0] is input sample number base
	base  int64
	total int64 // input samples written so far
	n     int64 // next output sample number
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// besselI0 is the zeroth-order modified Bessel function of the first
// kind, by the polynomial approximations of Abramowitz and Stegun 9.8.1 and
// 9.8.2 (relative error below 2e-7, plenty for float32 filter taps).
func besselI0(x float64) float64 {
	ax := math.Abs(x)
	if ax < 3.75 {
		y := (x / 3.75) * (x / 3.75)
		return 1 + y*(3.5156229+y*(3.0899424+y*(1.2067492+y*(0.2659732+y*(0.0360768+y*0.0045813)))))
	}
	y := 3.75 / ax
	return math.Exp(ax) / math.Sqrt(ax) * (0.39894228 + y*(0.01328592+y*(0.00225319+y*(-0.00157565+y*(0.00916281+
		y*(-0.02057706+y*(0.02635537+y*(-0.01647633+y*0.00392377))))))))
}

func newResampler(inRate, outRate int) *resampler {
	in, out := int64(inRate), int64(outRate)
	g := gcd(in, out)
	r := &resampler{up: out / g, down: in / g}

	low := float64(min(inRate, outRate))
	stop := low / 2
	pass := stop * passFraction
	fc := (pass + stop) / 2 / float64(inRate) // cutoff, cycles per input sample
	dw := 2 * math.Pi * (stop - pass) / float64(inRate)
	length := (stopAtten - 7.95) / (2.285 * dw)
	r.half = int64(math.Ceil(length / 2))
	r.width = int(2 * r.half)
	beta := 0.1102 * (stopAtten - 8.7)
	i0beta := besselI0(beta)
	r.phases = min(r.up, max(maxTaps/int64(r.width), 16))

	r.taps = make([]float32, int(r.phases)*r.width)
	half := float64(r.half)
	coef := make([]float64, r.width)
	for p := range int(r.phases) {
		frac := float64(p) / float64(r.phases)
		branch := r.taps[p*r.width : (p+1)*r.width]
		var sum float64
		clear(coef)
		for k := range r.width {
			// Tap k multiplies input sample i-half+1+k; its distance from t=i+frac.
			tau := frac + half - 1 - float64(k)
			u := tau / half
			if u <= -1 || u >= 1 {
				continue
			}
			x := 2 * fc * tau
			s := 1.0
			if x != 0 {
				s = math.Sin(math.Pi*x) / (math.Pi * x)
			}
			c := 2 * fc * s * besselI0(beta*math.Sqrt(1-u*u)) / i0beta
			coef[k] = c
			sum += c
		}
		// Unity gain at DC for every branch.
		for k := range coef {
			branch[k] = float32(coef[k] / sum)
		}
	}
	return r
}

// write adds input samples and appends every output sample they complete.
func (r *resampler) write(in []float32, out []int16) []int16 {
	r.buf = append(r.buf, in...)
	r.total += int64(len(in))
	return r.drain(out, false)
}

// flush appends the remaining output samples, treating the input after the
// last sample written as silence.
func (r *resampler) flush(out []int16) []int16 {
	return r.drain(out, true)
}

func (r *resampler) drain(out []int16, final bool) []int16 {
	for {
		num := r.n * r.down
		i, rem := num/r.up, num%r.up
		p := rem
		if r.phases != r.up {
			p = (rem*r.phases + r.up/2) / r.up
			if p == r.phases {
				i, p = i+1, 0
			}
		}
		if i >= r.total {
			break // output time is past the input written so far
		}
		if !final && i+r.half >= r.total {
			break // the filter needs input not written yet
		}
		first := i - r.half + 1
		branch := r.taps[int(p)*r.width : int(p+1)*r.width]
		lo, hi := 0, r.width // branch taps that fall on real input
		if first < 0 {
			lo = int(-first)
		}
		if end := first + int64(r.width); end > r.total {
			hi -= int(end - r.total)
		}
		var acc float32
		if lo < hi {
			x := r.buf[int(first-r.base)+lo : int(first-r.base)+hi]
			for k, c := range branch[lo:hi] {
				acc += c * x[k]
			}
		}
		out = append(out, toInt16(acc))
		r.n++
		// Drop input no later output can reach.
		if drop := int(first - r.base); drop > 0 && drop >= len(r.buf)/2 && drop >= 4096 {
			r.buf = r.buf[:copy(r.buf, r.buf[drop:])]
			r.base = first
		}
	}
	return out
}

// toInt16 converts a sample in [-1, 1) to int16, rounding and clipping.
func toInt16(x float32) int16 {
	v := math.Round(float64(x) * 32768)
	switch {
	case v >= 32767:
		return 32767
	case v <= -32768:
		return -32768
	case v != v: // NaN
		return 0
	}
	return int16(v)
}

// sink collects mono float32 input at some rate as int16 output at a mix
// rate, failing with ErrTooLong once the output passes max samples.
type sink struct {
	rs   *resampler // nil when the input is already at rate
	rate int
	out  []int16
	max  int64
	lim  limits
}

func newSink(inRate int, lim limits, capHint int64) *sink {
	rate := lim.outRate(inRate)
	s := &sink{rate: rate, max: lim.maxSamples(rate), lim: lim}
	s.out = make([]int16, 0, min(capHint, s.max)+1)
	if inRate != rate {
		s.rs = newResampler(inRate, rate)
	}
	return s
}

func (s *sink) tooLong() error {
	return fmt.Errorf("%w: over %s", ErrTooLong, s.lim.dur)
}

func (s *sink) write(x []float32) error {
	if s.rs == nil {
		for _, v := range x {
			s.out = append(s.out, toInt16(v))
		}
	} else {
		s.out = s.rs.write(x, s.out)
	}
	if int64(len(s.out)) > s.max {
		return s.tooLong()
	}
	return nil
}

func (s *sink) finish() (Audio, error) {
	if s.rs != nil {
		s.out = s.rs.flush(s.out)
	}
	if int64(len(s.out)) > s.max {
		return Audio{}, s.tooLong()
	}
	if len(s.out) == 0 {
		return Audio{}, ErrEmpty
	}
	return Audio{Samples: s.out, Rate: s.rate}, nil
}

// outputLen is the number of samples at outRate that frames input
// samples at inRate give.
func outputLen(frames int64, inRate, outRate int) int64 {
	return (frames*int64(outRate) + int64(inRate) - 1) / int64(inRate)
}

// Package resample converts a live mono 16-bit PCM stream between the mix
// rates of a room, 8, 16 and 48 kHz, one frame at a time: the step between a
// codec's rate and the room's mix rate in a call's media endpoint.
//
// The ratios are whole (2, 3 and 6), so every conversion is a polyphase
// FIR filter (a Kaiser-windowed sinc, designed once by New) that either
// keeps every 2nd or 3rd output (down) or computes 2 or 3 outputs per
// input (up). 8 ↔ 48 kHz is a cascade through 16 kHz, half the work of one
// filter at 48 kHz. The filters:
//
//	to or from 8 kHz:   flat to 3.4 kHz, ≥ 60 dB down from 4 kHz (the new Nyquist frequency)
//	16 ↔ 48 kHz:        flat to 7 kHz,   ≥ 60 dB down from 8 kHz
//
// so narrowband listeners hear no alias of 4–8 kHz content and wideband
// listeners hear no images of a narrowband member.
//
// Process takes one frame and writes one frame; the filter state is carried
// from frame to frame, so the output of a stream cut into frames is the
// output of the whole stream at once, and Process allocates nothing. A
// 20 ms frame is 160 samples at 8 kHz, 320 at 16 kHz and 960 at 48 kHz.
//
// # Delay and rate changes
//
// Every Resampler, whatever its rates, delays the audio by the same Delay
// (3.625 ms), and New(r, r) is a plain delay line of that length. So any
// two paths from one stream carry the same audio at the same instant, and
// a media endpoint can hand over from one to the other in a single frame
// when its room's mix rate changes from R to R' at tick T:
//
//   - Toward the room (the codec's rate stays): build New(codec, R') and
//     Prime it with the previous decoded frame, so its history is full.
//     In tick T convert the frame with both paths: the old one gives the
//     frame at R, the new one at R'. Then drop the old path.
//   - The mixer mixes tick T at both rates, once per rate change.
//   - Toward the listener (the codec's rate stays, the mix's changes):
//     build New(R', codec). In tick T the old path converts the mix at R,
//     the new one the mix at R', and Crossfade joins the two frames: the
//     old one while the new path fills, then a raised-cosine fade to the
//     new one. Then drop the old path.
//
// TestRateSwitch runs a tone through a room going 8 → 16 → 48 → 8 → 48 →
// 16 → 8 kHz this way: no sample is more than 0.1 % of the tone's
// amplitude from the tone delayed by 2·Delay, where paths switched cold
// are off by its whole amplitude (a gap and a click). Cheaper hand-overs
// do not work: the new path toward the listener cannot be primed (the mix
// at R' has no past), and cutting from the old path's tail to the new
// path at T is exact only between identical filters (between a delay
// line and a filter it was measured 8–80 % off).
package resample

import (
	"fmt"
	"time"
)

// delayTicks is the delay of every path in 1/48000 s: that of the slowest
// path, 8 ↔ 48 kHz (162 samples of the 2:1 filter at 16 kHz plus 12 of the
// 3:1 cascade filter at 48 kHz). TestDelay checks that it matches the
// designed filters.
const delayTicks = 174

// Delay is the group delay of every Resampler: what it adds to the latency
// of the audio, whatever the rates.
const Delay = delayTicks * time.Second / 48000

// Resampler converts a stream from one supported rate to another, frame by
// frame. It is not safe for concurrent use; each direction of each call has
// its own.
type Resampler struct {
	from, to int
	up, down int       // to/from = up/down, in lowest terms
	stages   []*stage  // none when from == to
	line     []int16   // from == to: the delay line, [Delay of history | chunk]
	mid, out []float32 // between the stages; the last stage's output
	chunk    int       // input samples per internal step (20 ms at from)
}

// New returns a Resampler from one rate to another; each is 8000, 16000 or
// 48000 Hz. New(r, r) is a delay line of Delay (see the package comment).
// The filters and buffers are made here; Process allocates nothing.
func New(from, to int) (*Resampler, error) {
	if !supported(from) || !supported(to) {
		return nil, fmt.Errorf("%w: %d Hz to %d Hz (8000, 16000 or 48000)", ErrRate, from, to)
	}
	r := &Resampler{from: from, to: to, chunk: from / 50}
	g := gcd(from, to)
	r.up, r.down = to/g, from/g

	// padFor is the extra delay, in samples at rate, that brings a path
	// of natural delay ticks up to delayTicks.
	padFor := func(ticks, rate int) int { return (delayTicks - ticks) * rate / 48000 }
	nb := func() []float64 { return lowpass(16000, nbPass, nbStop, 2) }
	wb := func() []float64 { return lowpass(48000, wbPass, wbStop, 3) }
	cascade := func() []float64 { return lowpass(48000, cascadePass, cascadeStop, 3) }
	half := func(h []float64) int { return len(h) / 2 }

	switch {
	case from == to:
		// No filter, so no float conversion either: int16 in and out.
		r.line = make([]int16, padFor(0, from)+r.chunk)
	case from == 16000 && to == 8000:
		h := nb()
		r.stages = []*stage{newDecimator(h, 2, padFor(3*half(h), from), r.chunk)}
	case from == 8000 && to == 16000:
		h := nb()
		r.stages = []*stage{newInterpolator(h, 2, padFor(3*half(h), from), r.chunk)}
	case from == 48000 && to == 16000:
		h := wb()
		r.stages = []*stage{newDecimator(h, 3, padFor(half(h), from), r.chunk)}
	case from == 16000 && to == 48000:
		h := wb()
		r.stages = []*stage{newInterpolator(h, 3, padFor(half(h), from), r.chunk)}
	case from == 48000 && to == 8000:
		h1, h2 := cascade(), nb()
		pad := padFor(half(h1)+3*half(h2), from)
		r.stages = []*stage{newDecimator(h1, 3, pad, r.chunk), newDecimator(h2, 2, 0, r.chunk/3)}
		r.mid = make([]float32, r.chunk/3)
	case from == 8000 && to == 48000:
		h1, h2 := nb(), cascade()
		pad := padFor(3*half(h1)+half(h2), from)
		r.stages = []*stage{newInterpolator(h1, 2, pad, r.chunk), newInterpolator(h2, 3, 0, 2*r.chunk)}
		r.mid = make([]float32, 2*r.chunk)
	}
	r.out = make([]float32, r.chunk*r.up/r.down)
	return r, nil
}

func supported(rate int) bool { return rate == 8000 || rate == 16000 || rate == 48000 }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// From returns the input rate in Hz.
func (r *Resampler) From() int { return r.from }

// To returns the output rate in Hz.
func (r *Resampler) To() int { return r.to }

// OutLen returns how many output samples Process writes for n input
// samples: n·To/From, for n a multiple of InMultiple.
func (r *Resampler) OutLen(n int) int { return n / r.down * r.up }

// InMultiple returns the number that the length of Process's src must be a
// multiple of: 6 from 48 to 8 kHz, 3 from 48 to 16 kHz, 2 from 16 to 8 kHz,
// else 1. Every frame of 2.5 ms or more qualifies.
func (r *Resampler) InMultiple() int { return r.down }

// Process converts src (one frame at From) into dst (the same duration at
// To) and returns the number of samples written, OutLen(len(src)): a 20 ms
// frame is 160 samples at 8 kHz, 320 at 16 kHz and 960 at 48 kHz. Any frame
// length works and the filter state carries over between calls. Only whole
// multiples of InMultiple input samples are converted, and only as many as
// dst has room for: if the return value is less than OutLen(len(src)), the
// caller passed a wrong length and the rest of src was not used.
func (r *Resampler) Process(dst, src []int16) int {
	n := min(len(src), len(dst)/r.up*r.down)
	n -= n % r.down
	if r.line != nil {
		r.delay(dst, src[:n])
		return n
	}
	written := 0
	for off := 0; off < n; {
		c := min(n-off, r.chunk)
		in := r.stages[0].in(c)
		for i, v := range src[off : off+c] {
			in[i] = float32(v)
		}
		written += r.step(dst[written:], c)
		off += c
	}
	return written
}

// step runs the c input samples just loaded through the stages into dst
// and returns how many samples it wrote.
func (r *Resampler) step(dst []int16, c int) int {
	s0 := r.stages[0]
	if len(r.stages) == 1 {
		s0.run(r.out, c)
	} else {
		s1 := r.stages[1]
		m := c * s0.up / s0.down
		s0.run(r.mid, c)
		copy(s1.in(m), r.mid[:m])
		s1.run(r.out, m)
	}
	k := c / r.down * r.up
	toInt16(dst[:k], r.out[:k])
	return k
}

// Prime feeds src (at From) into the filter history without producing any
// output, as if it had been processed and its output thrown away. A path
// built when a room changes rate is primed with the previous frame so that
// its first output continues the old path's last (see the package comment).
func (r *Resampler) Prime(src []int16) {
	n := len(src) - len(src)%r.down
	if r.line != nil {
		r.delay(nil, src[:n])
		return
	}
	for off := 0; off < n; {
		c := min(n-off, r.chunk)
		in := r.stages[0].in(c)
		for i, v := range src[off : off+c] {
			in[i] = float32(v)
		}
		if len(r.stages) == 1 {
			r.stages[0].run(nil, c)
		} else {
			m := c * r.stages[0].up / r.stages[0].down
			r.stages[0].run(r.mid, c)
			copy(r.stages[1].in(m), r.mid[:m])
			r.stages[1].run(nil, m)
		}
		off += c
	}
}

// delay runs src through the delay line into dst (nil: only into the
// line).
func (r *Resampler) delay(dst, src []int16) {
	pad := len(r.line) - r.chunk
	for len(src) > 0 {
		c := min(len(src), r.chunk)
		copy(r.line[pad:], src[:c])
		if dst != nil {
			copy(dst, r.line[:c])
			dst = dst[c:]
		}
		copy(r.line, r.line[c:c+pad])
		src = src[c:]
	}
}

// Reset forgets the history, as if the resampler were new: the next frame
// is converted as if silence preceded it.
func (r *Resampler) Reset() {
	clear(r.line)
	for _, s := range r.stages {
		s.reset()
	}
}

// toInt16 rounds x to the nearest integer and saturates it at the int16
// range.
func toInt16(dst []int16, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		switch {
		case v >= 32767:
			dst[i] = 32767
		case v <= -32768:
			dst[i] = -32768
		case v >= 0:
			dst[i] = int16(v + 0.5)
		default:
			dst[i] = int16(v - 0.5)
		}
	}
}

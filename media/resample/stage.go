package resample

// stage is one polyphase FIR step of a resampler: a decimator by down or an
// interpolator by up. It keeps the input
// history the filter needs in hist, so consecutive chunks join exactly as
// if the whole stream had been filtered at once.
//
// hist is [history (keep samples) | chunk (up to chunk samples)]; a chunk is
// loaded after the history, run, and its last keep samples become the next
// history. The pad oldest samples of the history delay the stage's output
// by pad input samples, so every path has the same total delay.
type stage struct {
	up, down int
	width    int       // taps per output sample (per branch when up > 1)
	taps     []float32 // down: the filter, time-reversed; up: up branches of width, each time-reversed
	pad      int
	keep     int // width - 1 + pad
	chunk    int // most input samples per run
	hist     []float32
}

// newDecimator builds a stage that filters with h and keeps every down-th
// output. h is symmetric, so reversing it for a forward dot product is a
// no-op.
func newDecimator(h []float64, down, pad, chunk int) *stage {
	s := &stage{up: 1, down: down, width: len(h), pad: pad, chunk: chunk}
	s.taps = make([]float32, len(h))
	for k, c := range h {
		s.taps[len(h)-1-k] = float32(c)
	}
	s.init()
	return s
}

// newInterpolator builds a stage that inserts up-1 zeros after every input
// sample and filters with h, in polyphase form: output n·up+p is branch p
// (taps p, p+up, p+2·up, … of h, times up) over the latest inputs. Each
// branch is scaled to sum to exactly 1, so a constant input gives a
// constant output with no ripple at the input rate.
func newInterpolator(h []float64, up, pad, chunk int) *stage {
	width := (len(h) + up - 1) / up
	s := &stage{up: up, down: 1, width: width, pad: pad, chunk: chunk}
	s.taps = make([]float32, up*width)
	for p := range up {
		var sum float64
		for j := range width {
			if k := j*up + p; k < len(h) {
				sum += h[k]
			}
		}
		branch := s.taps[p*width : (p+1)*width]
		for j := range width {
			if k := j*up + p; k < len(h) {
				branch[width-1-j] = float32(h[k] / sum)
			}
		}
	}
	s.init()
	return s
}

func (s *stage) init() {
	s.keep = s.width - 1 + s.pad
	s.hist = make([]float32, s.keep+s.chunk)
}

func (s *stage) reset() { clear(s.hist) }

// in returns the part of hist to load the next n input samples into.
func (s *stage) in(n int) []float32 { return s.hist[s.keep : s.keep+n] }

// run filters the n input samples just loaded into out (n·up/down
// samples; n is a multiple of down) and shifts the history. out may be nil
// to only advance the history (Prime).
func (s *stage) run(out []float32, n int) {
	if out != nil {
		switch {
		case s.down > 1:
			w, d := s.width, s.down
			out = out[:n/d]
			for j := range out {
				out[j] = dot(s.taps, s.hist[j*d:j*d+w])
			}
		default:
			w, u := s.width, s.up
			out = out[:n*u]
			for i := range n {
				x := s.hist[i : i+w]
				o := out[i*u : i*u+u]
				for p := range o {
					o[p] = dot(s.taps[p*w:p*w+w], x)
				}
			}
		}
	}
	copy(s.hist[:s.keep], s.hist[n:n+s.keep])
}

// dot is the inner product of a and b[:len(a)], with four partial sums so
// the additions do not wait on each other.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	for len(a) >= 4 && len(b) >= 4 {
		s0 += a[0] * b[0]
		s1 += a[1] * b[1]
		s2 += a[2] * b[2]
		s3 += a[3] * b[3]
		a, b = a[4:], b[4:]
	}
	for i := range a {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

package resample

import "math"

// stage is one polyphase FIR step of a resampler: a decimator by down or an
// interpolator by up. It keeps the input history the filter needs in hist,
// so consecutive chunks join exactly as if the whole stream had been
// filtered at once.
//
// hist is [history (keep samples) | chunk (up to chunk samples)]; a chunk is
// loaded after the history, run, and its last keep samples become the next
// history. The pad oldest samples of the history delay the stage's output
// by pad input samples, so every path has the same total delay.
//
// The filters are symmetric (linear phase), and the stage uses it to halve
// the multiplications: a decimator adds the two samples that meet the same
// tap before multiplying (fold); of an interpolator's branches, those that
// are symmetric themselves are folded the same way, and two branches that
// are each other's mirror image are computed together from the sum and the
// difference of the mirrored samples (pair).
type stage struct {
	up, down int
	width    int // input samples under the filter for one output
	pad      int
	keep     int // width - 1 + pad
	chunk    int // most input samples per run
	hist     []float32

	fold  []float32 // decimator: the first half of the filter, centre tap last
	plans []plan    // interpolator: how to compute each branch
}

// plan computes one interpolator branch p (or two, p and its mirror q)
// from the input window x[lo:hi].
type plan struct {
	kind   planKind
	p, q   int
	lo, hi int
	a, b   []float32 // fold: a; pair: a = sum half, b = difference half
}

type planKind uint8

const (
	planFold  planKind = iota // branch p is symmetric
	planPair                  // branch q is branch p reversed
	planPlain                 // no symmetry: a plain inner product
)

// newDecimator builds a stage that filters with h and keeps every down-th
// output.
func newDecimator(h []float64, down, pad, chunk int) *stage {
	s := &stage{up: 1, down: down, width: len(h), pad: pad, chunk: chunk}
	s.fold = foldTaps(h)
	s.init()
	return s
}

// newInterpolator builds a stage that inserts up-1 zeros after every input
// sample and filters with h, in polyphase form: output n·up+p is branch p
// (taps p, p+up, p+2·up, … of h) over the latest inputs. Each branch is
// scaled to sum to exactly 1, so a constant input gives a constant output
// with no ripple at the input rate.
func newInterpolator(h []float64, up, pad, chunk int) *stage {
	width := (len(h) + up - 1) / up
	s := &stage{up: up, down: 1, width: width, pad: pad, chunk: chunk}
	// branch[p][i] multiplies window sample i (oldest first), so it is
	// the branch's taps in reverse order.
	branch := make([][]float64, up)
	for p := range up {
		b := make([]float64, width)
		var sum float64
		for j := range width {
			if k := j*up + p; k < len(h) {
				b[width-1-j] = h[k]
				sum += h[k]
			}
		}
		for i := range b {
			b[i] /= sum
		}
		branch[p] = b
	}
	done := make([]bool, up)
	for p := range up {
		if done[p] {
			continue
		}
		lo, hi := span(branch[p])
		b := branch[p][lo:hi]
		if mirrors(b, b) {
			s.plans = append(s.plans, plan{kind: planFold, p: p, lo: lo, hi: hi, a: foldTaps(b)})
			done[p] = true
			continue
		}
		for q := p + 1; q < up; q++ {
			if qlo, qhi := span(branch[q]); !done[q] && qlo == lo && qhi == hi && mirrors(b, branch[q][lo:hi]) {
				sum, diff := pairTaps(b)
				s.plans = append(s.plans, plan{kind: planPair, p: p, q: q, lo: lo, hi: hi, a: sum, b: diff})
				done[p], done[q] = true, true
				break
			}
		}
		if !done[p] {
			// Not reached with this package's filters, whose halves are
			// whole multiples of up; a plain product keeps any other
			// design right.
			s.plans = append(s.plans, plan{kind: planPlain, p: p, lo: lo, hi: hi, a: toFloat32(b)})
			done[p] = true
		}
	}
	s.init()
	return s
}

// span returns the range of b outside which every tap is zero.
func span(b []float64) (lo, hi int) {
	lo, hi = 0, len(b)
	for lo < hi && b[lo] == 0 {
		lo++
	}
	for hi > lo && b[hi-1] == 0 {
		hi--
	}
	return lo, hi
}

// mirrors reports whether b is a reversed to rounding error.
func mirrors(a, b []float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[len(b)-1-i]) > 1e-12 {
			return false
		}
	}
	return true
}

func toFloat32(b []float64) []float32 {
	f := make([]float32, len(b))
	for i, v := range b {
		f[i] = float32(v)
	}
	return f
}

// foldTaps returns the first half of the symmetric filter h, with its
// centre tap last when its length is odd.
func foldTaps(h []float64) []float32 {
	f := make([]float32, (len(h)+1)/2)
	for i := range f {
		f[i] = float32(h[i])
	}
	return f
}

// pairTaps returns the half-sums and half-differences of b's mirrored taps
// (b[i] ± b[m-1-i])/2, and b's centre tap as the last sum when m is odd.
func pairTaps(b []float64) (sum, diff []float32) {
	m := len(b)
	sum, diff = make([]float32, (m+1)/2), make([]float32, m/2)
	for i := range m / 2 {
		sum[i] = float32((b[i] + b[m-1-i]) / 2)
		diff[i] = float32((b[i] - b[m-1-i]) / 2)
	}
	if m%2 == 1 {
		sum[m/2] = float32(b[m/2]) // both branches' own share, not halved: see dotPair
	}
	return sum, diff
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
		if s.down > 1 {
			w, d := s.width, s.down
			out = out[:n/d]
			for j := range out {
				out[j] = dotFold(s.fold, s.hist[j*d:j*d+w])
			}
		} else {
			w, u := s.width, s.up
			out = out[:n*u]
			for i := range n {
				x := s.hist[i : i+w]
				o := out[i*u : i*u+u]
				for k := range s.plans {
					pl := &s.plans[k]
					switch pl.kind {
					case planFold:
						o[pl.p] = dotFold(pl.a, x[pl.lo:pl.hi])
					case planPair:
						o[pl.p], o[pl.q] = dotPair(pl.a, pl.b, x[pl.lo:pl.hi])
					default:
						o[pl.p] = dot(pl.a, x[pl.lo:pl.hi])
					}
				}
			}
		}
	}
	copy(s.hist[:s.keep], s.hist[n:n+s.keep])
}

// dotFold is the inner product of the symmetric filter whose first half is
// f (foldTaps) with x: each tap multiplies the sum of the two samples that
// meet it.
func dotFold(f, x []float32) float32 {
	m := len(x)
	half := m / 2
	lo, hi := x[:half], x[m-half:] // hi reversed meets lo
	f = f[:(m+1)/2]
	var s0, s1, s2, s3 float32
	k := 0
	for ; k+4 <= half; k += 4 {
		t := f[k : k+4 : k+4]
		l := lo[k : k+4 : k+4]
		r := hi[half-k-4 : half-k : half-k]
		s0 += t[0] * (l[0] + r[3])
		s1 += t[1] * (l[1] + r[2])
		s2 += t[2] * (l[2] + r[1])
		s3 += t[3] * (l[3] + r[0])
	}
	for ; k < half; k++ {
		s0 += f[k] * (lo[k] + hi[half-1-k])
	}
	if m%2 == 1 {
		s1 += f[half] * x[half]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotPair computes a branch b and its mirror image over the window x from
// b's pairTaps: with S the half-sums times the sums of mirrored samples and
// D the half-differences times their differences, b·x = S+D and the
// mirror's is S−D. The centre tap of an odd branch counts in both.
func dotPair(sum, diff, x []float32) (y, mirror float32) {
	m := len(x)
	half := m / 2
	lo, hi := x[:half], x[m-half:]
	var centre float32
	if m%2 == 1 {
		centre = sum[half] * x[half]
	}
	sum, diff = sum[:half], diff[:half]
	var s0, s1, d0, d1 float32
	k := 0
	for ; k+2 <= half; k += 2 {
		t, e := sum[k:k+2:k+2], diff[k:k+2:k+2]
		l := lo[k : k+2 : k+2]
		r := hi[half-k-2 : half-k : half-k]
		s0 += t[0] * (l[0] + r[1])
		d0 += e[0] * (l[0] - r[1])
		s1 += t[1] * (l[1] + r[0])
		d1 += e[1] * (l[1] - r[0])
	}
	for ; k < half; k++ {
		s0 += sum[k] * (lo[k] + hi[half-1-k])
		d0 += diff[k] * (lo[k] - hi[half-1-k])
	}
	s, d := (s0+s1)+centre, d0+d1
	return s + d, s - d
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

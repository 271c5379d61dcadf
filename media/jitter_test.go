package media

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// phases are read phases relative to packet arrivals, to cover every
// ordering of the mixer tick and the network.
var phases = []time.Duration{0, 1 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	15 * time.Millisecond, 19 * time.Millisecond, 19*time.Millisecond + 900*time.Microsecond}

func TestJitterCleanToneStream(t *testing.T) {
	for _, phase := range phases {
		t.Run(phase.String(), func(t *testing.T) {
			const secs = 3
			enc, in := toneStream(PCMU, 1000, 8000, secs*ClockRate)
			pkts := packetize(enc, PCMU, 0x1234, 1000, fixedSize(FrameSamples), fixedLatency(time.Millisecond))
			var jb JitterBuffer
			const reads = secs * 50
			tr := simulate(t, &jb, pkts, phase, reads)

			first := slices.Index(tr.live, true)
			if first < 0 || first > 2 {
				t.Fatalf("first live read %d", first)
			}
			// Priming: from the first live read on, every read is live and
			// continuous, the output is the input delayed by a constant
			// number of whole frames.
			for i := first; i < reads; i++ {
				if !tr.live[i] {
					t.Fatalf("read %d not live", i)
				}
			}
			delay := first * FrameSamples
			for n := first * FrameSamples; n < reads*FrameSamples; n++ {
				if tr.out[n] != in[n-delay] {
					t.Fatalf("output sample %d = %d, want input sample %d = %d", n, tr.out[n], n-delay, in[n-delay])
				}
			}
			if len(tr.underruns) > 0 {
				t.Errorf("underruns at reads %v", tr.underruns)
			}
			if tr.maxDelay > FrameSamples {
				t.Errorf("Delay() reached %d samples, want <= %d", tr.maxDelay, FrameSamples)
			}
			st := jb.Stats()
			if st.Late != 0 || st.Concealed != 0 || st.Resyncs != 1 || st.Shrinks != 0 {
				t.Errorf("stats %+v", st)
			}
			// The buffer adds less than a frame of latency: a sample is
			// played at the first read after the packet carrying it
			// arrived.
			for _, p := range pkts {
				if p.at > tr.readAt[reads-1] {
					break
				}
				r := slices.IndexFunc(tr.readAt, func(at time.Duration) bool { return at >= p.at })
				if got := (r * FrameSamples) - delay; got != p.off {
					t.Fatalf("packet %d (arrived %v) played at read %d", p.seq, p.at, r)
				}
			}
		})
	}
}

func TestJitterPacketTimes(t *testing.T) {
	for _, ptime := range []int{10, 20, 30, 40, 60} {
		for _, phase := range phases {
			t.Run(fmt.Sprintf("%dms/%v", ptime, phase), func(t *testing.T) {
				const secs = 4
				enc, in := noiseStream(uint64(ptime), secs*ClockRate)
				size := ptime * ClockRate / 1000
				pkts := packetize(enc, PCMU, 77, 0xfffff000, fixedSize(size), fixedLatency(2*time.Millisecond))
				var jb JitterBuffer
				tr := simulate(t, &jb, pkts, phase, secs*50)
				tr.trim(secs*50 - 4) // the stream ends
				// At most one concealment, while the first packets arrive.
				checkContinuous(t, in, tr.out, 0, 2)
				if len(tr.underruns) > 1 || (len(tr.underruns) == 1 && tr.underruns[0] > ptime/20+2) {
					t.Errorf("underruns at reads %v", tr.underruns)
				}
				if limit := size + FrameSamples; tr.maxDelay > limit {
					t.Errorf("max delay %d > %d", tr.maxDelay, limit)
				}
				st := jb.Stats()
				if st.Late != 0 || st.Resyncs != 1 {
					t.Errorf("stats %+v", st)
				}
			})
		}
	}
}

// TestJitterHarness checks that align and checkContinuous catch what they
// are meant to catch, so that the tests built on them mean something.
func TestJitterHarness(t *testing.T) {
	_, in := noiseStream(1, 4000)
	delayed := append(make([]int16, 100), in[:3000]...)
	segs, unmatched := align(in, delayed)
	if len(segs) != 1 || segs[0] != (segment{100, 3100, 100}) || unmatched != 100 {
		t.Fatalf("delayed: %v %d", segs, unmatched)
	}
	// 50 samples skipped, then 60 samples played twice.
	broken := slices.Concat(in[:1000], in[1050:2000], in[1940:3000])
	segs, _ = align(in, broken)
	want := []segment{{0, 1000, 0}, {1000, 1950, -50}, {1950, 3010, 10}}
	if !slices.Equal(segs, want) {
		t.Fatalf("broken: %v, want %v", segs, want)
	}
	rec := &recordTB{}
	checkContinuous(rec, in, broken, 0, 5)
	if len(rec.errs) != 3 {
		t.Errorf("checkContinuous on a skip and a repeat reported %q", rec.errs)
	}
	rec = &recordTB{}
	checkContinuous(rec, in, delayed, 50, 0)
	if len(rec.errs) != 1 {
		t.Errorf("checkContinuous on delayed output with no events allowed reported %q", rec.errs)
	}
	rec = &recordTB{}
	checkContinuous(rec, in, delayed, 0, 1)
	if len(rec.errs) != 0 {
		t.Errorf("checkContinuous on delayed output reported %q", rec.errs)
	}
}

// recordTB records the failures reported to it.
type recordTB struct {
	testing.TB
	errs []string
}

func (r *recordTB) Helper() {}

func (r *recordTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
}

func TestJitterPacketTimeChanges(t *testing.T) {
	// 2 s of 20 ms packets, 2 s of 40 ms, 2 s of 10 ms.
	var sizes []int
	for range 100 {
		sizes = append(sizes, 160)
	}
	for range 50 {
		sizes = append(sizes, 320)
	}
	for range 200 {
		sizes = append(sizes, 80)
	}
	for _, phase := range phases {
		t.Run(phase.String(), func(t *testing.T) {
			enc, in := noiseStream(42, 6*ClockRate)
			pkts := packetize(enc, PCMA, 5, 0, func(i int) int { return sizes[i] }, fixedLatency(3*time.Millisecond))
			for i := range pkts {
				pkts[i].codec = PCMU // noiseStream is µ-law
			}
			var jb JitterBuffer
			tr := simulate(t, &jb, pkts, phase, 300)
			tr.trim(296)
			// A sender switching from 20 to 40 ms sends nothing for 40 ms
			// at the switch: one concealment there, none at 40 -> 10.
			segs := checkContinuous(t, in, tr.out, 0, 2)
			if len(tr.underruns) > 2 {
				t.Errorf("underruns at reads %v", tr.underruns)
			}
			for _, u := range tr.underruns {
				if u > 2 && (u < 100 || u > 104) {
					t.Errorf("underrun at read %d, away from the start and the 20->40 switch at read ~101", u)
				}
			}
			if tr.maxDelay > 320+FrameSamples {
				t.Errorf("max delay %d", tr.maxDelay)
			}
			if st := jb.Stats(); st.Late != 0 || st.Resyncs != 1 {
				t.Errorf("stats %+v", st)
			}
			t.Logf("segments %v underruns %v", segs, tr.underruns)
		})
	}
}

func TestJitterReorder(t *testing.T) {
	t.Run("20ms", func(t *testing.T) {
		enc, in := noiseStream(3, 3*ClockRate)
		pkts := packetize(enc, PCMU, 9, 123, fixedSize(160), func(i int) time.Duration {
			switch i {
			case 5:
				// One late packet early on makes the buffer hold
				// another frame.
				return 16 * time.Millisecond
			case 100:
				// Overtaken by packet 101, but still in time.
				return 26 * time.Millisecond
			}
			return time.Millisecond
		})
		var jb JitterBuffer
		tr := simulate(t, &jb, pkts, 10*time.Millisecond, 150)
		if pkts[100].at <= pkts[101].at {
			t.Fatal("packets 100 and 101 are not swapped")
		}
		segs := checkContinuous(t, in, tr.out, 0, 1)
		// The swap does not disturb the output: after the early late
		// packet, one delay and no underrun.
		if last := segs[len(segs)-1]; last.start > 10*FrameSamples {
			t.Errorf("output changes after read 10: %v", segs)
		}
		if st := jb.Stats(); st.Late != 0 || st.Underruns != 1 {
			t.Errorf("stats %+v (underruns at %v)", st, tr.underruns)
		}
	})
	t.Run("10ms", func(t *testing.T) {
		enc, in := noiseStream(4, 3*ClockRate)
		pkts := packetize(enc, PCMU, 9, 123, fixedSize(80), func(i int) time.Duration {
			if i == 40 {
				return 12 * time.Millisecond // arrives after 41, before the read
			}
			return time.Millisecond
		})
		var jb JitterBuffer
		tr := simulate(t, &jb, pkts, 5*time.Millisecond, 150)
		tr.trim(148)
		if pkts[40].at <= pkts[41].at {
			t.Fatal("packets 40 and 41 are not swapped")
		}
		segs := checkContinuous(t, in, tr.out, 0, 0)
		if len(segs) != 1 || jb.Stats().Late != 0 || len(tr.underruns) != 0 {
			t.Errorf("segments %v stats %+v underruns %v", segs, jb.Stats(), tr.underruns)
		}
	})
}

// lossCheck finds the concealment that starts after output sample from in a
// tone stream (the output was in delayed by delay before it) and checks it:
// it starts without a step, it fades out within the frame, and after that
// frame the buffer plays silence (no repeated frame, no 50 Hz buzz) until
// the real audio returns. It returns the first concealed sample and the
// first sample of real audio after the gap.
func lossCheck(t *testing.T, in, out []int16, from, delay int, amp float64) (int, int) {
	t.Helper()
	m := from
	for m < len(out) && out[m] == in[m-delay] {
		m++
	}
	if m == len(out) {
		t.Fatalf("no concealment after %d", from)
	}
	// The natural largest step between two samples of the tone.
	maxStep := 0
	for i := 1; i < len(in); i++ {
		maxStep = max(maxStep, int(math.Abs(float64(in[i])-float64(in[i-1]))))
	}
	if step := math.Abs(float64(out[m]) - float64(out[m-1])); step > float64(maxStep) {
		t.Errorf("concealment at %d starts with a step of %.0f (last real %d, first concealed %d; the tone moves at most %d per sample)",
			m, step, out[m-1], out[m], maxStep)
	}
	// The first concealed frame fades: its last quarter is quiet.
	peak := func(s []int16) float64 {
		p := 0.0
		for _, v := range s {
			p = max(p, math.Abs(float64(v)))
		}
		return p
	}
	if p := peak(out[m : m+FrameSamples/4]); p < amp/2 {
		t.Errorf("concealment starts too quiet: peak %.0f", p)
	}
	if p := peak(out[m+3*FrameSamples/4 : m+FrameSamples]); p > amp/4 {
		t.Errorf("concealment does not fade: last quarter peaks at %.0f", p)
	}
	// After it, silence until real audio returns.
	resume := m + FrameSamples
	for resume < len(out) && out[resume] == 0 {
		resume++
	}
	return m, resume
}

func TestJitterLoss(t *testing.T) {
	const amp = 8000
	// An irrational number of samples per period: a frame played twice
	// or skipped cannot go unnoticed.
	enc, in := toneStream(PCMU, 440*math.Sqrt2/1.4, amp, 4*ClockRate)
	lost := map[int]bool{50: true, 100: true, 101: true, 102: true, 103: true, 104: true}
	all := packetize(enc, PCMU, 1, 0, fixedSize(160), fixedLatency(time.Millisecond))
	var pkts []simPacket
	for _, p := range all {
		if !lost[p.seq] {
			pkts = append(pkts, p)
		}
	}
	var jb JitterBuffer
	tr := simulate(t, &jb, pkts, 10*time.Millisecond, 190)
	out := tr.out
	delay := FrameSamples // the first read (10 ms) sees nothing; packet 0 (21 ms) plays at 30 ms
	for n := delay; n < 50*FrameSamples; n++ {
		if out[n] != in[n-delay] {
			t.Fatalf("before the loss, output %d = %d, want %d", n, out[n], in[n-delay])
		}
	}

	// One lost packet.
	m, resume := lossCheck(t, in, out, delay, delay, amp)
	if m != 50*FrameSamples+delay {
		t.Errorf("concealment starts at %d, want %d", m, 50*FrameSamples+delay)
	}
	checkResume := func(resume, maxGap int) int {
		t.Helper()
		if resume-m > maxGap+1 { // +1: the fade in starts at 0
			t.Errorf("gap of %d samples for %d lost", resume-m, maxGap)
		}
		// Real audio returns with a short fade in, then exact: find the
		// new delay after the fade.
		d := -1
		probe := resume + fadeSamples
		for dd := delay; dd <= delay+12*FrameSamples; dd++ {
			ok := true
			for n := probe; n < probe+FrameSamples; n++ {
				if out[n] != in[n-dd] {
					ok = false
					break
				}
			}
			if ok {
				d = dd
				break
			}
		}
		if d < 0 {
			t.Fatalf("no exact audio after the gap at %d", resume)
		}
		for n := resume; n < probe; n++ {
			if math.Abs(float64(out[n])) > math.Abs(float64(in[n-d]))+1 {
				t.Errorf("fade in at %d: %d louder than the signal %d", n, out[n], in[n-d])
			}
		}
		return d
	}
	// The buffer waits one frame for the missing packet (it might only be
	// late), then conceals the frame and moves on: the delay grows by one
	// frame.
	d1 := checkResume(resume, 2*FrameSamples)
	if d1 != delay+FrameSamples {
		t.Errorf("after one loss the delay is %d, want %d", d1, delay+FrameSamples)
	}

	// Five lost packets in a row: one fading frame, then silence, no
	// repetition of the last frame.
	m, resume = lossCheck(t, in, out, resume+fadeSamples, d1, amp)
	if want := 100*FrameSamples + d1; m != want {
		t.Errorf("concealment starts at %d, want %d", m, want)
	}
	var energy float64
	for _, v := range out[m+FrameSamples : resume] {
		energy += float64(v) * float64(v)
	}
	if energy != 0 {
		t.Errorf("energy after the first concealed frame: %g", energy)
	}
	// The buffer cannot tell lost packets from late ones: it waits (and
	// conceals) while nothing arrives, then conceals the missing frames
	// once packet 105 shows they are lost. The gap is at most twice the
	// loss and the delay grows by at most the loss.
	d2 := checkResume(resume, 10*FrameSamples)
	checkNoClicks(t, in, out[delay:len(out)-2*FrameSamples], amp)
	if d2 > d1+5*FrameSamples {
		t.Errorf("delay grew from %d to %d", d1, d2)
	}
	st := jb.Stats()
	t.Logf("gap of %d samples for 5 lost packets; delay %d -> %d -> %d samples; stats %+v", resume-m, delay, d1, d2, st)
	if st.Late != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.Concealed < 6*FrameSamples {
		t.Errorf("concealed %d samples for 6 lost packets", st.Concealed)
	}
}

func TestJitterLossMidFrame(t *testing.T) {
	// 10 ms packets: a lost packet leaves a gap that may start in the
	// middle of a 20 ms frame. The concealment must continue from the last
	// real sample played, not from the previous frame, lead back into the
	// real signal without a click, and the audio after the gap must all
	// be played.
	const amp = 8000
	for _, phase := range []time.Duration{5 * time.Millisecond, 15 * time.Millisecond} {
		for _, lostSeq := range []int{60, 61} {
			t.Run(fmt.Sprintf("%v/lost%d", phase, lostSeq), func(t *testing.T) {
				run := func(enc []byte) simTrace {
					var pkts []simPacket
					for _, p := range packetize(enc, PCMU, 1, 0, fixedSize(80), fixedLatency(time.Millisecond)) {
						if p.seq != lostSeq {
							pkts = append(pkts, p)
						}
					}
					var jb JitterBuffer
					tr := simulate(t, &jb, pkts, phase, 90)
					tr.trim(85)
					if st := jb.Stats(); st.Concealed == 0 || st.Concealed > 2*FrameSamples || st.Late != 0 {
						t.Errorf("stats %+v", st)
					}
					return tr
				}
				// Continuity, on noise (every sample traceable).
				enc, in := noiseStream(uint64(lostSeq), 2*ClockRate)
				tr := run(enc)
				segs, _ := align(in, tr.out)
				// The segment before the loss (the start may have had a
				// concealment too, while the first packets arrived).
				i := slices.IndexFunc(segs, func(s segment) bool { return s.end-s.start > 1000 })
				if i < 0 || i+1 >= len(segs) {
					t.Fatalf("segments %v", segs)
				}
				start, delay, m := segs[i].start, segs[i].delay, segs[i].end
				if want := lostSeq*80 + delay; m != want {
					t.Errorf("concealment starts at output %d, want %d (segments %v)", m, want, segs)
				}
				if next := segs[i+1]; next.start-next.delay > (lostSeq+1)*80+fadeSamples {
					t.Errorf("input %d..%d skipped after the lost packet (segments %v)",
						(lostSeq+1)*80, next.start-next.delay, segs)
				}
				if len(segs) > i+2 {
					t.Errorf("more than one event: %v", segs)
				}
				// No clicks, on a tone.
				enc, in = toneStream(PCMU, 440*math.Sqrt2/1.4, amp, 2*ClockRate)
				tr = run(enc)
				for n := start; n < m; n++ {
					if tr.out[n] != in[n-delay] {
						t.Fatalf("tone output differs from the noise run before the loss at %d", n)
					}
				}
				checkNoClicks(t, in, tr.out[start:], amp)
			})
		}
	}
}

// checkNoClicks asserts that out, made from the tone in of amplitude amp,
// never moves between two samples by more than the tone itself does plus
// what a fade of one frame and a cross-fade of fadeSamples add.
func checkNoClicks(t *testing.T, in, out []int16, amp float64) {
	t.Helper()
	maxStep := 0.0
	for i := 1; i < len(in); i++ {
		maxStep = max(maxStep, math.Abs(float64(in[i])-float64(in[i-1])))
	}
	limit := maxStep + 2*amp/fadeSamples + amp/FrameSamples + 2
	for n := 1; n < len(out); n++ {
		if step := math.Abs(float64(out[n]) - float64(out[n-1])); step > limit {
			t.Errorf("click at output %d: %d -> %d (step %.0f, limit %.0f)", n, out[n-1], out[n], step, limit)
			return
		}
	}
}

func TestJitterLatePacket(t *testing.T) {
	enc, in := noiseStream(5, 2*ClockRate)
	pkts := packetize(enc, PCMU, 1, 5000, fixedSize(160), func(i int) time.Duration {
		if i == 30 {
			return 70 * time.Millisecond // long after its play-out
		}
		return time.Millisecond
	})
	// And a duplicate of an old packet, long after it was played.
	dup := pkts[10]
	dup.at = pkts[40].at
	pkts = append(pkts, dup)
	var jb JitterBuffer
	tr := simulate(t, &jb, pkts, 10*time.Millisecond, 100)
	if tr.late != 2 || jb.Stats().Late != 2 {
		t.Errorf("late packets: trace %d, stats %+v", tr.late, jb.Stats())
	}
	// The late packet was concealed and never played.
	segs, _ := align(in, tr.out)
	for _, s := range segs {
		if a, b := s.start-s.delay, s.end-s.delay; a < 31*FrameSamples && b > 30*FrameSamples {
			t.Errorf("input of the late packet played: %v", s)
		}
	}
	// Apart from the loss, the audio is continuous: one frame waited for,
	// one concealed in its place.
	if len(segs) != 2 || segs[1].delay != segs[0].delay+FrameSamples ||
		segs[1].start-segs[0].end > 2*FrameSamples+fadeSamples || segs[1].end < 98*FrameSamples {
		t.Errorf("segments %v", segs)
	}
}

func TestJitterPartlyLatePacket(t *testing.T) {
	// A 60 ms packet whose first part is already past play-out: the rest
	// is played.
	enc, in := noiseStream(6, ClockRate)
	var jb JitterBuffer
	frame := make([]int16, FrameSamples)
	jb.Put(1, 0, PCMU, enc[:160])
	jb.Read(frame)
	jb.Read(frame) // conceals: 160..480 are missing
	jb.Read(frame) // still waiting
	d0 := jb.Delay()
	jb.Put(1, 160, PCMU, enc[160:640])
	if jb.Stats().Late != 0 {
		t.Fatalf("partly late packet counted as late: %+v", jb.Stats())
	}
	if d := jb.Delay(); d != 480 || d0 != 0 {
		t.Errorf("delay %d -> %d, want 0 -> 480", d0, d)
	}
	// The buffer waited: the packet plays from its start, after a
	// cross-fade out of the concealment.
	var out []int16
	for range 3 {
		jb.Read(frame)
		out = append(out, frame...)
	}
	if !slices.Equal(out[fadeSamples:], in[160+fadeSamples:640]) {
		t.Errorf("partly late packet not played in full")
	}
}

func TestJitterResync(t *testing.T) {
	encA, inA := noiseStream(7, ClockRate)
	encB, inB := noiseStream(8, ClockRate)
	for _, tc := range []struct {
		name   string
		ssrcB  uint32
		tsB    uint32
		late   bool // the jump looks like late packets until the buffer gives up
		resync int
	}{
		{"new SSRC", 2, 7777, false, 1},
		{"new SSRC same timestamps", 2, 1000 + ClockRate, false, 1},
		{"timestamp jump", 1, 1000 + ClockRate + 1_000_000, false, 1},
		{"timestamp jump past the ring", 1, 1000 + ClockRate + 1900, false, 1},
		{"timestamp skip within the ring", 1, 1000 + ClockRate + 1200, false, 1},
		{"timestamp jump back", 1, 1000 + ClockRate - 5000, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := packetize(encA, PCMU, 1, 1000, fixedSize(160), fixedLatency(time.Millisecond))
			b := packetize(encB, PCMU, tc.ssrcB, tc.tsB, fixedSize(160), fixedLatency(time.Millisecond))
			for i := range b {
				b[i].at += time.Second
			}
			pkts = append(pkts, b...)
			var jb JitterBuffer
			tr := simulate(t, &jb, pkts, 10*time.Millisecond, 100)
			tr.trim(98)
			st := jb.Stats()
			if got := len(tr.resyncs) - 1; got != tc.resync {
				t.Errorf("resyncs after the start: %d, want %d (at reads %v)", got, tc.resync, tr.resyncs)
			}
			in := slices.Concat(inA, inB)
			segs, _ := align(in, tr.out)
			if tc.late {
				if len(segs) != 2 {
					t.Fatalf("segments %v", segs)
				}
				a, z := segs[0], segs[1]
				// Same SSRC, older timestamps: indistinguishable from
				// late packets until the buffer runs dry and restarts.
				if st.Late == 0 || z.delay > a.delay+emptyReadsToUnprime*FrameSamples {
					t.Errorf("stats %+v segments %v", st, segs)
				}
				if z.start-z.delay > len(inA)+emptyReadsToUnprime*FrameSamples+fadeSamples {
					t.Errorf("stream B resumed late: %v", segs)
				}
				return
			}
			// No delay added: B follows A seamlessly, at the latency A
			// had.
			if len(segs) != 1 || segs[0].start > FrameSamples || segs[0].end < 98*FrameSamples {
				t.Errorf("segments %v", segs)
			}
			if st.Late != 0 || st.Underruns != 0 {
				t.Errorf("stats %+v", st)
			}
			if tr.maxDelay > FrameSamples {
				t.Errorf("max delay %d", tr.maxDelay)
			}
		})
	}
}

func TestJitterAdaptsToJitter(t *testing.T) {
	const (
		jitterSecs = 20
		cleanSecs  = 15
	)
	enc, in := noiseStream(9, (jitterSecs+cleanSecs)*ClockRate)
	r := rand.New(rand.NewPCG(1, 2))
	pkts := packetize(enc, PCMU, 3, 0, fixedSize(160), func(i int) time.Duration {
		// 1 s clean, so the buffer starts at its smallest delay.
		if i >= 50 && i < jitterSecs*50 {
			return time.Millisecond + time.Duration(r.Int64N(int64(40*time.Millisecond)))
		}
		return time.Millisecond
	})
	var jb JitterBuffer
	reads := (jitterSecs+cleanSecs)*50 - 3
	tr := simulate(t, &jb, pkts, 10*time.Millisecond, reads)

	var under []int // underruns per second
	for _, u := range tr.underruns {
		for len(under) <= u/50 {
			under = append(under, 0)
		}
		under[u/50]++
	}
	t.Logf("underruns per second: %v", under)
	t.Logf("stats %+v", jb.Stats())
	// Adapting: the delay grows to absorb the jitter and the underruns
	// stop (a second or so of them, then at most a rare one).
	lateUnder := 0
	for _, u := range tr.underruns {
		if u >= 5*50 && u < jitterSecs*50 {
			lateUnder++
		}
	}
	if lateUnder > 3 {
		t.Errorf("%d underruns after the first 5 s of jitter", lateUnder)
	}
	peak := slices.Max(tr.delayAfter[:jitterSecs*50])
	if peak < 2*FrameSamples {
		t.Errorf("delay peaked at %d samples under 40 ms of jitter", peak)
	}
	if tr.maxDelay > maxDelaySamples+FrameSamples {
		t.Errorf("delay reached %d samples", tr.maxDelay)
	}
	// Shrinking: once the jitter stops the delay comes back to at most a
	// frame within 15 s.
	shrinksBefore := 0
	// (count shrinks during the jitter by replaying the stats at the switch)
	_ = shrinksBefore
	tail := tr.delayAfter[reads-50:]
	if m := slices.Max(tail); m > FrameSamples {
		t.Errorf("delay after %d s of clean stream: %d samples (want <= %d); delay per second: %v",
			cleanSecs, m, FrameSamples, perSecond(tr.delayAfter))
	}
	if jb.Stats().Shrinks == 0 {
		t.Error("no shrink")
	}
	if jb.Stats().Underruns != uint64(len(tr.underruns)) {
		t.Errorf("underruns %d vs %d", jb.Stats().Underruns, len(tr.underruns))
	}
	// The audio is all there, in order, with only the concealments at the
	// underruns and the shrinks.
	segs, _ := align(in, tr.out)
	for i := 1; i < len(segs); i++ {
		if segs[i].start-segs[i].delay < segs[i-1].end-segs[i-1].delay {
			t.Errorf("audio played twice: %v %v", segs[i-1], segs[i])
		}
	}
	t.Logf("delay per second: %v", perSecond(tr.delayAfter))
}

// perSecond returns the largest of each 50 values.
func perSecond(v []int) []int {
	var out []int
	for i := 0; i < len(v); i += 50 {
		out = append(out, slices.Max(v[i:min(i+50, len(v))]))
	}
	return out
}

func TestJitterStreamStops(t *testing.T) {
	enc, in := noiseStream(10, 2*ClockRate)
	a := packetize(enc[:ClockRate], PCMU, 1, 0, fixedSize(160), fixedLatency(time.Millisecond))
	// The sender resumes 1 s later (silence suppression: the timestamps
	// moved on too).
	b := packetize(enc[ClockRate:], PCMU, 1, 2*ClockRate, fixedSize(160), fixedLatency(time.Millisecond))
	for i := range b {
		b[i].at += 2 * time.Second
	}
	var jb JitterBuffer
	tr := simulate(t, &jb, append(a, b...), 10*time.Millisecond, 190)
	lastA := 50 // the read that plays A's last packet (reads at 10 ms + 20k, packets at 20k+1)
	if !tr.live[lastA] || tr.live[lastA+emptyReadsToUnprime] {
		t.Errorf("live around the end: %v", tr.live[lastA-1:lastA+emptyReadsToUnprime+2])
	}
	for r := lastA + 1; r < lastA+emptyReadsToUnprime; r++ {
		if !tr.live[r] {
			t.Errorf("read %d (%d after the stream stopped) not live", r, r-lastA)
		}
	}
	firstB := 101 // packet B0 arrives at 2021 ms, read at 2030 ms
	for r := lastA + emptyReadsToUnprime; r < firstB; r++ {
		if tr.live[r] || slices.ContainsFunc(tr.out[r*FrameSamples:(r+1)*FrameSamples], func(s int16) bool { return s != 0 }) {
			t.Fatalf("read %d: live %v or not silent", r, tr.live[r])
		}
		if jb.Primed() && r == firstB-1 {
			t.Error("still primed")
		}
	}
	// B plays at once: the first read after its first packet arrived plays
	// it exactly.
	// (It fades in from the silence over fadeSamples.)
	if !tr.live[firstB] || !slices.Equal(tr.out[firstB*FrameSamples+fadeSamples:(firstB+1)*FrameSamples], in[ClockRate+fadeSamples:ClockRate+FrameSamples]) {
		t.Errorf("stream B does not start at read %d", firstB)
	}
	segs, _ := align(in, tr.out)
	z := segs[len(segs)-1]
	if z.start != firstB*FrameSamples+fadeSamples || z.start-z.delay != ClockRate+fadeSamples {
		t.Errorf("segments %v", segs)
	}
	// The unprimed reads were not underruns (B stops too, at the end).
	if st := jb.Stats(); st.Underruns != 2*(emptyReadsToUnprime-1) || st.Resyncs != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestJitterResetAndZeroValue(t *testing.T) {
	var jb JitterBuffer
	frame := make([]int16, FrameSamples)
	for i := range frame {
		frame[i] = 99
	}
	if jb.Read(frame) || jb.Primed() || jb.Delay() != 0 || slices.ContainsFunc(frame, func(s int16) bool { return s != 0 }) {
		t.Fatal("zero value is not an idle buffer")
	}
	enc, in := noiseStream(11, 320)
	jb.Put(1, 0, PCMU, enc[:160])
	jb.Put(1, 160, PCMU, nil)                       // empty: ignored
	jb.Put(1, 160, PCMU, make([]byte, ringSamples)) // absurdly long: ignored
	if jb.Delay() != 160 || jb.Stats().Packets != 1 {
		t.Fatalf("delay %d stats %+v", jb.Delay(), jb.Stats())
	}
	jb.Reset()
	if jb.Primed() || jb.Read(frame) {
		t.Fatal("Reset did not unprime")
	}
	jb.Put(1, 160, PCMU, enc[160:320])
	if !jb.Read(frame) || !slices.Equal(frame, in[160:320]) {
		t.Fatal("after Reset, the next packet does not play at once")
	}
}

func TestJitterPCMA(t *testing.T) {
	enc, in := toneStream(PCMA, 1000, 8000, FrameSamples)
	var jb JitterBuffer
	jb.Put(1, 0, PCMA, enc)
	frame := make([]int16, FrameSamples)
	if !jb.Read(frame) || !slices.Equal(frame, in) {
		t.Error("PCMA not decoded")
	}
}

func TestJitterNoAllocs(t *testing.T) {
	enc, _ := noiseStream(12, FrameSamples)
	var jb JitterBuffer
	frame := make([]int16, FrameSamples)
	ts := uint32(0)
	jb.Put(1, ts, PCMU, enc)
	jb.Read(frame)
	allocs := testing.AllocsPerRun(1000, func() {
		ts += FrameSamples
		jb.Put(1, ts, PCMU, enc)
		jb.Read(frame)
	})
	if allocs != 0 {
		t.Errorf("Put+Read: %v allocs", allocs)
	}
	// Concealment and resyncs do not allocate either.
	allocs = testing.AllocsPerRun(100, func() {
		jb.Read(frame)
		ts += 100_000
		jb.Put(2, ts, PCMU, enc)
		jb.Read(frame)
	})
	if allocs != 0 {
		t.Errorf("conceal+resync: %v allocs", allocs)
	}
}

func BenchmarkJitterPutRead(b *testing.B) {
	enc, _ := noiseStream(13, FrameSamples)
	var jb JitterBuffer
	frame := make([]int16, FrameSamples)
	ts := uint32(0)
	b.ReportAllocs()
	for b.Loop() {
		jb.Put(1, ts, PCMU, enc)
		jb.Read(frame)
		ts += FrameSamples
	}
}

func TestJitterDelayBounded(t *testing.T) {
	// Wild jitter (0-300 ms): the buffer never holds more than 100 ms
	// plus a frame, and never plays audio twice.
	enc, in := noiseStream(14, 10*ClockRate)
	r := rand.New(rand.NewPCG(3, 4))
	pkts := packetize(enc, PCMU, 3, 0, fixedSize(160), func(i int) time.Duration {
		return time.Duration(r.Int64N(int64(300 * time.Millisecond)))
	})
	var jb JitterBuffer
	tr := simulate(t, &jb, pkts, 10*time.Millisecond, 10*50)
	if tr.maxDelay > maxDelaySamples+FrameSamples {
		t.Errorf("delay reached %d samples", tr.maxDelay)
	}
	segs, _ := align(in, tr.out)
	for i := 1; i < len(segs); i++ {
		if segs[i].start-segs[i].delay < segs[i-1].end-segs[i-1].delay {
			t.Errorf("audio played twice: %v %v", segs[i-1], segs[i])
		}
	}
	t.Logf("stats %+v", jb.Stats())
}

func TestJitterGapThenTailNotArrived(t *testing.T) {
	// 5 ms packets; packet 4 is lost, packet 5 has arrived, packet 6 is
	// on its way when the mixer reads. The read conceals packet 4's
	// samples, plays packet 5, and must then wait for packet 6 rather than
	// run past the end of the audio it has (which would make packets 6
	// and 7 "late" when they arrive).
	enc, in := noiseStream(15, 800)
	var jb JitterBuffer
	frame := make([]int16, FrameSamples)
	for ts := 0; ts < 160; ts += 40 {
		jb.Put(1, uint32(ts), PCMU, enc[ts:ts+40])
	}
	jb.Read(frame) // plays 0..160
	jb.Put(1, 200, PCMU, enc[200:240])
	jb.Read(frame) // conceals 160..200, plays 200..240, waits
	if d := jb.Delay(); d < 0 {
		t.Errorf("the play-out point ran %d samples past the buffered audio", -d)
	}
	for ts := 240; ts < 560; ts += 40 {
		jb.Put(1, uint32(ts), PCMU, enc[ts:ts+40])
	}
	if st := jb.Stats(); st.Late != 0 {
		t.Errorf("packets that had not been due yet dropped as late: %+v", st)
	}
	var out []int16
	for range 2 {
		jb.Read(frame)
		out = append(out, frame...)
	}
	// Packets 6 and on are played (after the cross-fade).
	segs, _ := align(in, out)
	if len(segs) == 0 || segs[0].start-segs[0].delay > 240+fadeSamples {
		t.Errorf("packet 6 not played from its start: segments %v", segs)
	}
}

package media

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// This file holds the harness the jitter buffer tests share: a sender that
// cuts a known G.711 stream into packets, a network that delivers them at
// chosen times, and a mixer that reads one frame every 20 ms. The buffer is
// driven only through Put and Read.

const frameTime = 20 * time.Millisecond

// sampleTime is the duration of n samples at ClockRate.
func sampleTime(n int) time.Duration { return time.Duration(n) * time.Second / ClockRate }

// noiseStream returns n random PCMU code words and their decoded samples.
// Every 8-sample window of it is unique, so any output sample can be traced
// back to the input sample it came from.
func noiseStream(seed uint64, n int) ([]byte, []int16) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	enc := make([]byte, n)
	for i := range enc {
		enc[i] = byte(r.Uint32())
	}
	pcm := make([]int16, n)
	PCMU.Decode(pcm, enc)
	return enc, pcm
}

// toneStream returns n samples of a sine of freqHz at amplitude amp encoded
// with c, and the decoded samples (what an exact jitter buffer plays).
func toneStream(c Codec, freqHz, amp float64, n int) ([]byte, []int16) {
	src := make([]int16, n)
	for i := range src {
		src[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freqHz*float64(i)/ClockRate)))
	}
	enc := make([]byte, n)
	c.Encode(enc, src)
	pcm := make([]int16, n)
	c.Decode(pcm, enc)
	return enc, pcm
}

// simPacket is one packet on the wire.
type simPacket struct {
	at      time.Duration // arrival time
	seq     int           // index in send order
	ssrc    uint32
	ts      uint32
	codec   Codec
	payload []byte
	off     int // offset of the first sample in the sent stream
}

// packetize cuts enc into packets whose sizes size(i) returns (in samples).
// Packet i is sent when its last sample has been captured and reaches the
// receiver after network(i). The stream starts at RTP timestamp ts0.
func packetize(enc []byte, codec Codec, ssrc, ts0 uint32, size func(i int) int, network func(i int) time.Duration) []simPacket {
	var pkts []simPacket
	for i, off := 0, 0; off < len(enc); i++ {
		n := min(size(i), len(enc)-off)
		pkts = append(pkts, simPacket{
			at:      sampleTime(off+n) + network(i),
			seq:     i,
			ssrc:    ssrc,
			ts:      ts0 + uint32(off),
			codec:   codec,
			payload: enc[off : off+n],
			off:     off,
		})
		off += n
	}
	return pkts
}

func fixedSize(n int) func(int) int { return func(int) int { return n } }

func fixedLatency(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

// simTrace is what the mixer saw.
type simTrace struct {
	out        []int16 // every frame read, concatenated
	live       []bool  // Read's result per frame
	readAt     []time.Duration
	delayAfter []int // Delay() after each read
	maxDelay   int   // the largest Delay() seen at any point
	underruns  []int // the read indices at which Stats().Underruns grew
	resyncs    []int // the read indices before which Stats().Resyncs grew
	late       int   // packets Stats().Late grew on
}

// simulate delivers pkts in arrival order (a stable sort: packets with the
// same arrival time keep their order) and reads nReads frames, the first at
// firstRead and then every 20 ms. A packet arriving at a read's time is
// delivered before the read.
func simulate(t testing.TB, jb *JitterBuffer, pkts []simPacket, firstRead time.Duration, nReads int) simTrace {
	t.Helper()
	pkts = slices.Clone(pkts)
	slices.SortStableFunc(pkts, func(a, b simPacket) int {
		if a.at < b.at {
			return -1
		}
		if a.at > b.at {
			return 1
		}
		return 0
	})
	var tr simTrace
	frame := make([]int16, FrameSamples)
	p := 0
	for r := range nReads {
		now := firstRead + time.Duration(r)*frameTime
		for ; p < len(pkts) && pkts[p].at <= now; p++ {
			before := jb.Stats()
			pk := pkts[p]
			jb.Put(pk.ssrc, pk.ts, pk.codec, pk.payload)
			after := jb.Stats()
			if after.Resyncs > before.Resyncs {
				tr.resyncs = append(tr.resyncs, r)
			}
			if after.Late > before.Late {
				tr.late++
			}
			tr.maxDelay = max(tr.maxDelay, jb.Delay())
		}
		before := jb.Stats()
		live := jb.Read(frame)
		if jb.Stats().Underruns > before.Underruns {
			tr.underruns = append(tr.underruns, r)
		}
		tr.out = append(tr.out, frame...)
		tr.live = append(tr.live, live)
		tr.readAt = append(tr.readAt, now)
		tr.delayAfter = append(tr.delayAfter, jb.Delay())
		tr.maxDelay = max(tr.maxDelay, jb.Delay())
	}
	return tr
}

// trim forgets everything from read n on (after the sender stopped).
func (tr *simTrace) trim(n int) {
	tr.out = tr.out[:n*FrameSamples]
	tr.live = tr.live[:n]
	tr.readAt = tr.readAt[:n]
	tr.delayAfter = tr.delayAfter[:n]
	cut := func(s []int) []int {
		return slices.DeleteFunc(s, func(r int) bool { return r >= n })
	}
	tr.underruns = cut(tr.underruns)
	tr.resyncs = cut(tr.resyncs)
}

// segment is a run of output samples that equal the input delayed by a
// constant: out[n] == in[n-delay] for start <= n < end.
type segment struct{ start, end, delay int }

// align traces every output sample back to the input (which must have
// unique 8-sample windows, see noiseStream) and returns the runs of exact
// copies and how many output samples are not part of any run (concealment,
// fades, silence).
func align(in, out []int16) (segs []segment, unmatched int) {
	const w = 8
	key := func(s []int16) uint64 {
		var b [2 * w]byte
		for i, v := range s[:w] {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		}
		h := uint64(1469598103934665603)
		for _, c := range b {
			h = (h ^ uint64(c)) * 1099511628211
		}
		return h
	}
	index := make(map[uint64]int, len(in))
	for i := 0; i+w <= len(in); i++ {
		k := key(in[i:])
		if _, dup := index[k]; dup {
			index[k] = -1
		} else {
			index[k] = i
		}
	}
	for n := 0; n < len(out); {
		p, ok := -1, false
		if n+w <= len(out) {
			p, ok = index[key(out[n:])]
		}
		if !ok || p < 0 || !slices.Equal(out[n:n+w], in[p:p+w]) {
			unmatched++
			n++
			continue
		}
		d := n - p
		m := n
		for m < len(out) && m-d < len(in) && out[m] == in[m-d] {
			m++
		}
		if len(segs) > 0 && segs[len(segs)-1].delay == d && segs[len(segs)-1].end == n {
			segs[len(segs)-1].end = m
		} else {
			segs = append(segs, segment{n, m, d})
		}
		n = m
	}
	return segs, unmatched
}

// checkContinuous asserts that after settle output samples the output is the
// input delayed by a constant, except around at most maxEvents places where
// the delay changes (each may cost up to a frame of concealment plus the
// fade back in), and that the whole input after the first such event is
// played (no audio skipped or played twice).
func checkContinuous(t testing.TB, in, out []int16, settle, maxEvents int) []segment {
	t.Helper()
	segs, _ := align(in, out)
	var kept []segment
	for _, s := range segs {
		if s.end > settle {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		t.Fatalf("no output matches the input after sample %d", settle)
		return nil
	}
	switch {
	case settle == 0 && kept[0].start > 5*FrameSamples:
		t.Errorf("output starts matching the input only at %d", kept[0].start)
	case settle > 0 && kept[0].start > settle:
		// Anything between settle and the first match must be an event.
		maxEvents--
	}
	if changes := len(kept) - 1; changes > maxEvents {
		t.Errorf("output delay changed %d times (want <= %d): %v", changes, maxEvents, kept)
	}
	for i := 1; i < len(kept); i++ {
		a, b := kept[i-1], kept[i]
		if gap := b.start - a.end; gap > FrameSamples+fadeSamples+8 {
			t.Errorf("%d samples of non-matching output between %v and %v", gap, a, b)
		}
		// The delay may only grow (concealment inserted), and the input
		// must resume where it stopped: nothing skipped, nothing repeated.
		if b.delay < a.delay {
			t.Errorf("output skipped input: %v then %v", a, b)
		}
		if lastIn, nextIn := a.end-a.delay, b.start-b.delay; nextIn < lastIn {
			t.Errorf("input samples %d..%d played twice: %v then %v", nextIn, lastIn, a, b)
		} else if nextIn > lastIn+fadeSamples+8 {
			t.Errorf("input samples %d..%d never played: %v then %v", lastIn, nextIn, a, b)
		}
	}
	last := kept[len(kept)-1]
	if last.end < len(out)-FrameSamples {
		t.Errorf("output stops matching at %d of %d: %v", last.end, len(out), kept)
	}
	return kept
}

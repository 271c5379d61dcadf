package media

// ringSamples is the span the jitter buffer can hold: 256 ms at 8 kHz, well
// above the 100 ms the adaptation ever keeps.
const ringSamples = 2048

// maxDelaySamples bounds how far ahead of the play-out point the buffer keeps
// audio (100 ms); audio further ahead makes it skip forward.
const maxDelaySamples = 800

// emptyReadsToUnprime is how many reads in a row with nothing buffered end
// the stream (silence suppression, hold, the caller stopped sending); the
// next packet then primes the buffer afresh with no added delay.
const emptyReadsToUnprime = 10

// shrinkWindow is how many reads pass between two attempts to lower the
// delay (5 s at 20 ms).
const shrinkWindow = 250

// lateRunToRestart is how many packets in a row more than a second behind
// the play-out point make the buffer follow the sender's timestamps back;
// late packets of ordinary jitter are only dropped.
const lateRunToRestart = 3

// fadeSamples is the length of the ramp that leads back into real audio
// after a concealed gap (4 ms).
const fadeSamples = 32

// JitterStats counts what a JitterBuffer did. All counters only grow.
type JitterStats struct {
	Packets   uint64 // packets accepted
	Late      uint64 // packets that arrived after their play-out time and were dropped
	Concealed uint64 // samples synthesised for missing audio
	Underruns uint64 // reads that found the next audio not yet there
	Resyncs   uint64 // jumps to a new timeline (new SSRC, timestamp jump, restart)
	Shrinks   uint64 // times the delay was lowered
	Invalid   uint64 // packets the codec cannot play (a malformed Opus TOC, too long)
	Recovered uint64 // samples of lost audio recovered from the next packet's in-band FEC (Opus)
}

// JitterBuffer turns RTP audio packets of any duration (10 to 60 ms or more,
// changing at will) into a steady series of 20 ms PCM frames.
//
// Packets are decoded on arrival into a ring of PCM samples addressed by RTP
// timestamp, so reordered packets land where they belong and duplicates are
// harmless. The play-out point starts at the first packet (about one frame of
// delay on a clean network). When the next audio has not arrived at read
// time, the buffer conceals the gap and waits rather than skipping, which
// raises the delay by exactly the lateness seen; when the delay has been more
// than needed for a while, it drops the surplus, backing off when that
// proves premature. Lost audio is concealed by a faded, time-reversed copy
// of the last output, which joins the real signal without a step and does
// not repeat a frame (no 50 Hz buzz).
//
// A JitterBuffer is used by one goroutine (the mixer's); it allocates
// nothing after construction. The zero value is ready to use.
type JitterBuffer struct {
	pcm [ringSamples]int16
	// stamp holds the low 16 bits of the RTP timestamp of each slot's
	// sample. A slot is current when they match: a stale slot could only
	// pass for current after 32 laps (8 s) unwritten, and restart marks
	// every slot stale whenever a stream (re)starts.
	stamp [ringSamples]uint16

	primed   bool
	ssrc     uint32
	readTS   uint32 // timestamp of the next sample to play
	highTS   uint32 // one past the newest buffered sample
	emptyRun int

	// adaptation
	reads       uint64
	lastUnder   uint64 // read count at the last underrun
	lastShrink  uint64
	minSurplus  int32
	holdoff     uint64                  // reads to wait after an underrun before shrinking
	lateRun     int                     // late packets in a row
	concealRun  int                     // samples concealed in a row
	fadeIn      int                     // samples of the fade-in still to apply
	hist        [2 * FrameSamples]int16 // the last output, a ring
	histPos     int                     // where hist takes the next sample
	anchor      int                     // histPos when the concealment began
	stats       JitterStats
	windowReads int
}

// Stats returns the counters.
func (j *JitterBuffer) Stats() JitterStats { return j.stats }

// Primed reports whether the buffer is playing a stream.
func (j *JitterBuffer) Primed() bool { return j.primed }

// Delay returns the audio buffered ahead of the play-out point, in samples.
func (j *JitterBuffer) Delay() int {
	if !j.primed {
		return 0
	}
	return int(int32(j.highTS - j.readTS))
}

// Reset forgets the stream; the next packet starts a new one.
func (j *JitterBuffer) Reset() {
	j.primed = false
	j.emptyRun = 0
}

// restart begins a new timeline at ts.
func (j *JitterBuffer) restart(ssrc, ts uint32) {
	j.primed = true
	j.ssrc = ssrc
	j.readTS = ts
	j.highTS = ts
	j.emptyRun = 0
	j.minSurplus = 1 << 30
	j.windowReads = 0
	j.lateRun = 0
	j.holdoff = shrinkWindow // a new timeline starts with no history of premature shrinks
	// Mark every slot stale: slot i holds a timestamp one lap behind.
	for i := range j.stamp {
		slot := uint32(i)
		off := (slot - ts) % ringSamples
		j.stamp[i] = uint16(ts + off - ringSamples)
	}
	j.stats.Resyncs++
}

// Put stores the audio of one RTP packet. payload is G.711 data in codec;
// it is decoded at once and not retained.
func (j *JitterBuffer) Put(ssrc, ts uint32, codec Codec, payload []byte) {
	n := len(payload)
	if n == 0 || n >= ringSamples-FrameSamples {
		return
	}
	if !j.primed || ssrc != j.ssrc {
		j.restart(ssrc, ts)
	}
	d := int32(ts - j.readTS)
	if d+int32(n) <= 0 {
		j.stats.Late++
		if d > -ClockRate { // late by under a second: jitter, a stray
			j.lateRun = 0
			return
		}
		j.lateRun++
		if j.lateRun < lateRunToRestart {
			return
		}
		// Packet after packet behind the play-out point: the sender
		// moved its timestamps back. Follow it rather than drop it all.
		j.restart(ssrc, ts)
		d = 0
	}
	j.lateRun = 0
	if d > maxDelaySamples+ringSamples/2 || d < -ringSamples/2 {
		// A jump (sender restarted its timestamps, a long pause without
		// silence suppression signalling): follow the new timeline.
		j.restart(ssrc, ts)
		d = 0
	}
	if d < 0 { // partly late: keep the part still to be played
		payload = payload[-d:]
		ts -= uint32(d)
		n = len(payload)
		d = 0
	}
	if end := d + int32(n); end > maxDelaySamples+FrameSamples {
		// Too far ahead of play-out: skip forward so that this packet
		// ends one frame beyond the play-out point.
		skip := uint32(end - FrameSamples)
		j.readTS += skip
		j.stats.Resyncs++
	}
	table := &ulawToLinear
	if codec == PCMA {
		table = &alawToLinear
	}
	for i := range n {
		t := ts + uint32(i)
		slot := t % ringSamples
		j.pcm[slot] = table[payload[i]]
		j.stamp[slot] = uint16(t)
	}
	if end := ts + uint32(n); int32(end-j.highTS) > 0 {
		j.highTS = end
	}
	j.emptyRun = 0
	j.stats.Packets++
}

// available counts the contiguous samples present from the play-out point,
// up to limit.
func (j *JitterBuffer) available(limit int) int {
	for i := range limit {
		t := j.readTS + uint32(i)
		if j.stamp[t%ringSamples] != uint16(t) {
			return i
		}
	}
	return limit
}

// Read fills dst (normally FrameSamples long) with the next audio and
// reports whether the stream is live. When it is not, dst is silence.
func (j *JitterBuffer) Read(dst []int16) bool {
	if !j.primed {
		clear(dst)
		return false
	}
	j.reads++
	want := len(dst)
	ahead := int(int32(j.highTS - j.readTS))
	if ahead <= 0 {
		j.emptyRun++
		if j.emptyRun >= emptyReadsToUnprime {
			j.primed = false
			clear(dst)
			return false
		}
		// Nothing here yet: conceal and wait (the delay grows by a frame).
		j.stats.Underruns++
		j.lastUnder = j.reads
		j.conceal(dst)
		return true
	}
	j.emptyRun = 0
	avail := j.available(want)
	switch {
	case avail == want:
		j.copyOut(dst, want)
	case ahead <= avail:
		// The tail has not arrived: play what is here, conceal the rest
		// and wait for it.
		j.copyOut(dst[:avail], avail)
		j.conceal(dst[avail:])
		j.stats.Underruns++
		j.lastUnder = j.reads
	default:
		// A gap with audio behind it: lost or very late packets.
		// Conceal the missing samples and move on.
		for i := range want {
			t := j.readTS
			slot := t % ringSamples
			if j.stamp[slot] == uint16(t) {
				j.copyOut(dst[i:i+1], 1)
			} else if int32(j.highTS-t) <= 0 {
				// Past the newest audio: the rest has not arrived
				// yet, so wait for it as above.
				j.conceal(dst[i:])
				j.stats.Underruns++
				j.lastUnder = j.reads
				break
			} else {
				j.conceal(dst[i : i+1])
				j.readTS++
			}
		}
	}
	j.adapt()
	return true
}

// copyOut plays n present samples from the play-out point. After a
// concealment it cross-fades from the continuing concealment into the real
// signal, so the joint has no step.
func (j *JitterBuffer) copyOut(dst []int16, n int) {
	i := 0
	for ; i < n && j.fadeIn > 0; i++ { // the fade back from a concealment
		s := j.pcm[(j.readTS+uint32(i))%ringSamples]
		g := int32(fadeSamples - j.fadeIn)
		s = int16((int32(s)*g + j.concealSample()*(fadeSamples-g)) / fadeSamples)
		j.fadeIn--
		dst[i] = s
		j.hist[j.histPos] = s
		j.histPos = (j.histPos + 1) % len(j.hist)
	}
	if i < n { // the rest: block copies out of the ring and into the history
		from := i
		for i < n {
			i += copy(dst[i:n], j.pcm[(j.readTS+uint32(i))%ringSamples:])
		}
		j.pushHist(dst[from:n])
	}
	j.readTS += uint32(n)
	if j.fadeIn == 0 {
		j.concealRun = 0
	}
}

// lastBefore copies into dst the played samples that end skip samples
// before the last one played (dst and skip together at most the two
// frames the history keeps): what a resampler built at a rate change is
// primed with.
func (j *JitterBuffer) lastBefore(dst []int16, skip int) {
	n := len(j.hist)
	start := j.histPos - skip - len(dst)
	for i := range dst {
		dst[i] = j.hist[((start+i)%n+n)%n]
	}
}

// pushHist appends played samples to the history ring.
func (j *JitterBuffer) pushHist(s []int16) {
	if len(s) > len(j.hist) {
		s = s[len(s)-len(j.hist):]
	}
	k := copy(j.hist[j.histPos:], s)
	copy(j.hist[:], s[k:])
	j.histPos = (j.histPos + len(s)) % len(j.hist)
}

// conceal synthesises missing samples: the output before the gap mirrored
// in time (continuous at the joint) under a linear fade that reaches
// silence after one frame. Concealed samples are not added to the history,
// so a gap that spans reads, or starts in the middle of one, mirrors the
// real output that preceded it.
func (j *JitterBuffer) conceal(dst []int16) {
	for i := range dst {
		if j.concealRun == 0 {
			j.anchor = j.histPos
		}
		dst[i] = int16(j.concealSample())
	}
	j.stats.Concealed += uint64(len(dst))
	j.fadeIn = fadeSamples
}

// concealSample returns the next sample of the current concealment.
func (j *JitterBuffer) concealSample() int32 {
	k := j.concealRun
	j.concealRun++
	if k >= FrameSamples {
		return 0
	}
	idx := (j.anchor - 1 - k + len(j.hist)) % len(j.hist)
	return int32(j.hist[idx]) * int32(FrameSamples-k) / FrameSamples
}

// adapt lowers the delay when the buffer has held more than it needed for a
// whole window without an underrun.
func (j *JitterBuffer) adapt() {
	surplus := int32(j.highTS - j.readTS)
	j.minSurplus = min(j.minSurplus, surplus)
	j.windowReads++
	if j.windowReads < shrinkWindow {
		return
	}
	minSurplus := j.minSurplus
	j.windowReads = 0
	j.minSurplus = 1 << 30
	sinceUnder := j.reads - j.lastUnder
	if j.lastShrink != 0 && j.lastUnder > j.lastShrink && j.lastUnder-j.lastShrink < 2*shrinkWindow {
		// The last shrink was premature: wait longer next time.
		j.holdoff = min(j.holdoff*2, 16*shrinkWindow)
		j.lastShrink = 0
	}
	if sinceUnder >= 8*j.holdoff && j.holdoff > shrinkWindow {
		j.holdoff /= 2 // a long calm: earn back quicker shrinking
	}
	if sinceUnder < j.holdoff || minSurplus < FrameSamples/2 {
		return
	}
	drop := uint32(minSurplus / (FrameSamples / 2) * (FrameSamples / 2))
	j.readTS += drop
	if j.concealRun == 0 {
		j.anchor = j.histPos // cross-fade from the output so far
	}
	j.fadeIn = fadeSamples
	j.lastShrink = j.reads
	j.stats.Shrinks++
}

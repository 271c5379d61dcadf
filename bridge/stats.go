package bridge

import (
	"sync/atomic"
	"time"

	"chorus/media"
)

// LatenessBuckets are the upper bounds of the tick lateness histogram.
var LatenessBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
}

// JitterBuckets are the upper bounds of the interarrival jitter histogram.
var JitterBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond,
}

// Stats are the bridge's counters, updated with atomics on the mixer and
// signalling paths and read by the metrics endpoint.
type Stats struct {
	Conferences atomic.Uint64 // conferences created
	Calls       atomic.Uint64 // calls created
	Members     atomic.Uint64 // members added

	Ticks      atomic.Uint64 // mixer ticks
	Restarts   atomic.Uint64 // clock restarts after a stall beyond the catch-up bound
	Demotions  atomic.Uint64 // mixer threads dropped from a raised priority after a restart
	TickNanos  atomic.Uint64 // time spent mixing
	Mixed      atomic.Uint64 // talker frames mixed
	Encodes    atomic.Uint64 // G.711 frames encoded (shared ones once)
	PacketsIn  atomic.Uint64 // RTP datagrams read by mixers
	PacketsOut atomic.Uint64 // RTP packets sent by mixers
	Panics     atomic.Uint64 // mixer ticks that panicked (bugs), recovered

	// Lateness counts ticks by how late they woke: bucket i holds those at
	// most LatenessBuckets[i] late, the last one the rest.
	Lateness    [len(LatenessBuckets) + 1]atomic.Uint64
	MaxLateness atomic.Int64 // nanoseconds
	// LatenessNanos sums the lateness of every tick: the histogram's _sum.
	LatenessNanos atomic.Uint64

	Digits atomic.Uint64 // DTMF digits received, in-band or by SIP INFO

	Recordings      atomic.Uint64 // recordings started
	RecordingErrors atomic.Uint64 // recordings ended by an error (a disk that could not keep up, a failed write, the quota crossed)
	// RecordingsRefused counts recordings refused at start: the user's
	// quota used up, or the recordings' filesystem nearly full.
	RecordingsRefused atomic.Uint64

	// The reception of conference members' RTP, published by the mixers
	// about once a second per call while it lasts (statsTicks) and the
	// rest when it leaves: the jitter buffers' counters
	// (media.JitterStats) and the sessions' loss (media.Reception).
	JitterPackets   atomic.Uint64 // packets accepted
	JitterLate      atomic.Uint64 // packets dropped for arriving after their play-out time
	JitterConcealed atomic.Uint64 // samples synthesised for lost or late audio
	JitterUnderruns atomic.Uint64 // reads that found the next audio not yet there
	JitterResyncs   atomic.Uint64 // jumps to a new timeline (new SSRC, timestamp jump)
	Lost            atomic.Uint64 // packets lost by sequence number (RFC 3550 §6.4.1)

	// Jitter counts, once a second per member whose audio arrived in that
	// second, its session's interarrival jitter (RFC 3550 §6.4.1): bucket
	// i holds the samples at most JitterBuckets[i], the last the rest.
	Jitter [len(JitterBuckets) + 1]atomic.Uint64
	// JitterNanos sums the samples: the histogram's _sum.
	JitterNanos atomic.Uint64
}

// statsTicks is how often, in ticks, the mixer publishes a member's
// reception figures (once a second): a 1/statsTicks share of the room's
// members each tick, so that no tick of a big room pays for all of them.
const statsTicks = 50

// rtpDelta gathers members' reception figures (media.LiveStats) in plain
// memory, for one flush into Stats: a tick worker's for a round, or a
// leaving member's own.
type rtpDelta struct {
	any                                                bool
	packets, late, concealed, underruns, resyncs, lost uint64
	jitter                                             [len(JitterBuckets) + 1]uint64
	jitterNanos                                        uint64
}

// add adds one member's figures; sample counts its jitter in the
// histogram.
func (d *rtpDelta) add(ls media.LiveStats, sample bool) {
	d.any = true
	b := &ls.Buffer
	d.packets += b.Packets
	d.late += b.Late
	d.concealed += b.Concealed
	d.underruns += b.Underruns
	d.resyncs += b.Resyncs
	d.lost += ls.Lost
	if sample {
		i := 0
		for i < len(JitterBuckets) && ls.Jitter > JitterBuckets[i] {
			i++
		}
		d.jitter[i]++
		d.jitterNanos += uint64(ls.Jitter)
	}
}

// flush adds what was gathered to st (the counters that moved only) and
// zeroes it.
func (d *rtpDelta) flush(st *Stats) {
	if !d.any {
		return
	}
	for _, c := range [...]struct {
		to *atomic.Uint64
		n  uint64
	}{{&st.JitterPackets, d.packets}, {&st.JitterLate, d.late}, {&st.JitterConcealed, d.concealed},
		{&st.JitterUnderruns, d.underruns}, {&st.JitterResyncs, d.resyncs}, {&st.Lost, d.lost},
		{&st.JitterNanos, d.jitterNanos}} {
		if c.n != 0 {
			c.to.Add(c.n)
		}
	}
	for i, n := range d.jitter {
		if n != 0 {
			st.Jitter[i].Add(n)
		}
	}
	*d = rtpDelta{}
}

func (s *Stats) observeLateness(late time.Duration) {
	i := 0
	for i < len(LatenessBuckets) && late > LatenessBuckets[i] {
		i++
	}
	s.Lateness[i].Add(1)
	s.LatenessNanos.Add(uint64(max(late, 0)))
	for {
		cur := s.MaxLateness.Load()
		if int64(late) <= cur || s.MaxLateness.CompareAndSwap(cur, int64(late)) {
			return
		}
	}
}

// Live counts, at the moment, the conferences not completed, their active
// members and the callers waiting in their lobbies (for metrics gauges).
// It takes the bridge's lock once and each conference's briefly.
func (b *Bridge) Live() (conferences, members, waiting int) {
	b.mu.Lock()
	confs := make([]*Conference, 0, len(b.confs))
	for _, c := range b.confs {
		confs = append(confs, c)
	}
	b.mu.Unlock()
	for _, c := range confs {
		in := c.Info()
		if in.State == StateCompleted {
			continue
		}
		conferences++
		members += in.ActiveMembers
		waiting += in.Waiting
	}
	return conferences, members, waiting
}

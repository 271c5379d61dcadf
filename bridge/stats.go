package bridge

import (
	"sync/atomic"
	"time"
)

// LatenessBuckets are the upper bounds of the tick lateness histogram.
var LatenessBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
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
	RecordingErrors atomic.Uint64 // recordings ended by an error (a disk that could not keep up, a failed write)

	// Jitter buffer counters (media.JitterStats) of the members that have
	// left, added as each member's memory is released: the mixer owns a
	// live member's buffer, so its counters are not read before.
	JitterPackets   atomic.Uint64 // packets accepted
	JitterLate      atomic.Uint64 // packets dropped for arriving after their play-out time
	JitterConcealed atomic.Uint64 // samples synthesised for lost or late audio
	JitterUnderruns atomic.Uint64 // reads that found the next audio not yet there
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

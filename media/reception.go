package media

import "time"

// maxDropout and maxMisorder are RFC 3550 Appendix A.1's bounds: a
// sequence number up to maxDropout ahead of the highest seen is a gap of
// lost packets, one up to maxMisorder behind it is late or duplicated,
// and anything else means the sender restarted its numbering.
const (
	maxDropout  = 3000
	maxMisorder = 100
)

// maxTransitStep bounds the change of transit time a single packet may
// bring to the jitter estimate: a phone that resumes after a hold with
// its timestamps where it left them would otherwise put minutes into it,
// to decay over hundreds of packets.
const maxTransitStep = int64(time.Second)

// Reception is what a session has received from its source, as an RTCP
// receiver report would state it (RFC 3550 §6.4.1).
type Reception struct {
	// Received counts the packets from the proven source (audio and
	// telephone-events alike: they share the sequence numbers).
	Received uint64
	// Lost is the cumulative number of packets lost: the packets expected
	// from the sequence numbers minus those received (Appendix A.3),
	// summed over the streams of every SSRC the source used, never below
	// zero for a stream (duplicates could make it so).
	Lost uint64
	// Jitter is the interarrival jitter estimate (§6.4.1, Appendix A.8),
	// from the kernel's arrival time of each audio packet; 0 until two
	// have arrived.
	Jitter time.Duration
}

// reception keeps a Session's receive figures. The poll goroutine updates
// it under the session's lock, per packet, with a few integer operations;
// it costs a session 56 bytes. Per-stream counts are 32 bits: a stream
// of 20 ms packets wraps them after two years.
type reception struct {
	lostPrev uint64 // lost in the SSRC's earlier streams
	lostPub  uint64 // Lost as last taken (takeReception)
	lastArr  int64  // arrival of the previous audio packet; 0: none
	jitter   int64  // nanoseconds

	ssrc     uint32
	lastTS   uint32 // RTP timestamp of the previous audio packet
	received uint32 // packets of the stream
	cycles   uint32 // sequence number wraps of the stream
	maxSeq   uint16 // highest sequence number seen
	baseSeq  uint16 // first sequence number of the stream
	started  bool
}

// restart begins a new stream (a new SSRC, or numbering restarted): what
// the old one lost is kept.
func (r *reception) restart(ssrc uint32, seq uint16) {
	r.lostPrev += r.streamLost()
	r.started, r.ssrc = true, ssrc
	r.maxSeq, r.cycles, r.baseSeq, r.received = seq, 0, seq, 0
	r.lastArr = 0
}

// packet counts a packet from the source (RFC 3550 Appendix A.1, without
// its probation: the session's strict source has proven the sender).
func (r *reception) packet(ssrc uint32, seq uint16) {
	if !r.started || ssrc != r.ssrc {
		r.restart(ssrc, seq)
	} else if d := seq - r.maxSeq; d != 0 && d < maxDropout {
		if seq < r.maxSeq {
			r.cycles++ // wrapped
		}
		r.maxSeq = seq
	} else if d >= maxDropout && d <= 1<<16-maxMisorder {
		r.restart(ssrc, seq) // a jump: the sender renumbered
	}
	// else a duplicate or a late packet: received, expecting nothing more
	r.received++
}

// streamLost is the current stream's cumulative loss, not below zero.
func (r *reception) streamLost() uint64 {
	if !r.started {
		return 0
	}
	expected := uint64(r.cycles)<<16 + uint64(r.maxSeq) - uint64(r.baseSeq) + 1
	if expected <= uint64(r.received) {
		return 0
	}
	return expected - uint64(r.received)
}

// audio times an audio packet of RTP timestamp ts (at clock Hz: 8000,
// or 48000 for Opus) that arrived at arrival (unix nanos by the kernel's
// clock; 0: unknown): the difference D of its
// transit time from the previous packet's moves the estimate by
// (|D| − J)/16 (RFC 3550 Appendix A.8).
func (r *reception) audio(arrival int64, ts uint32, clock int) {
	if arrival == 0 {
		r.lastArr = 0
		return
	}
	if r.lastArr != 0 {
		d := arrival - r.lastArr - int64(int32(ts-r.lastTS))*int64(time.Second)/int64(clock)
		if d < 0 {
			d = -d
		}
		if d <= maxTransitStep {
			r.jitter += (d - r.jitter) >> 4
		}
	}
	r.lastArr, r.lastTS = arrival, ts
}

// figures returns the Reception; received is the session's count.
func (r *reception) figures(received uint64) Reception {
	return Reception{Received: received, Lost: r.lostPrev + r.streamLost(), Jitter: time.Duration(r.jitter)}
}

// Reception returns the session's receive figures so far. It takes the
// session's lock: it is for reports and the API, not for every tick.
func (s *Session) Reception() Reception {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recv.figures(s.packetsIn.Load())
}

// takeReception returns how many packets were lost since it was last
// called (never negative: a late packet that makes the loss smaller is
// not taken back) and the jitter now.
func (s *Session) takeReception() (lost uint64, jitter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.recv.figures(s.packetsIn.Load())
	if f.Lost > s.recv.lostPub {
		lost = f.Lost - s.recv.lostPub
		s.recv.lostPub = f.Lost
	}
	return lost, f.Jitter
}

package media

import (
	"testing"
	"time"
	"unsafe"
)

// TestReceptionLoss: the cumulative loss of RFC 3550 Appendix A.1/A.3
// (expected from the sequence numbers minus received) through gaps, a
// wrap, reordering, duplicates, a new SSRC and a renumbering sender.
func TestReceptionLoss(t *testing.T) {
	type pkt struct {
		ssrc uint32
		seq  uint16
	}
	run := func(ssrc uint32, from, to int, skip func(int) bool) []pkt {
		var out []pkt
		for i := from; i <= to; i++ {
			if skip == nil || !skip(i) {
				out = append(out, pkt{ssrc, uint16(i)})
			}
		}
		return out
	}
	cat := func(ps ...[]pkt) []pkt {
		var out []pkt
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		pkts []pkt
		lost uint64
	}{
		{"clean", run(1, 100, 199, nil), 0},
		{"every 10th", run(1, 100, 199, func(i int) bool { return i%10 == 5 }), 10},
		{"wrap", run(1, 65530, 65536+20, func(i int) bool { return i == 65534 || i == 65536+3 }), 2},
		{"reordered", []pkt{{1, 1}, {1, 2}, {1, 4}, {1, 3}, {1, 5}}, 0},
		{"late after counted lost", []pkt{{1, 1}, {1, 3}, {1, 4}, {1, 2}}, 0},
		{"duplicates", []pkt{{1, 1}, {1, 2}, {1, 2}, {1, 3}}, 0},
		{"new ssrc", cat(run(1, 1, 4, func(i int) bool { return i == 3 }), run(2, 500, 510, func(i int) bool { return i == 505 })), 2},
		{"renumbered", cat(run(1, 1, 10, func(i int) bool { return i == 5 }), run(1, 30000, 30010, nil)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r reception
			for _, p := range tc.pkts {
				r.packet(p.ssrc, p.seq)
			}
			if lost := r.figures(0).Lost; lost != tc.lost {
				t.Errorf("lost %d, want %d", lost, tc.lost)
			}
		})
	}
}

// TestReceptionJitter: the estimator of RFC 3550 Appendix A.8 on made-up
// arrival times.
func TestReceptionJitter(t *testing.T) {
	const frame = 20 * time.Millisecond
	feed := func(arrival func(i int) time.Duration, n int) time.Duration {
		var r reception
		t0 := time.Now().UnixNano()
		for i := range n {
			r.audio(t0+int64(arrival(i)), uint32(5000+i*FrameSamples), ClockRate)
		}
		return r.figures(0).Jitter
	}
	if j := feed(func(i int) time.Duration { return time.Duration(i) * frame }, 100); j != 0 {
		t.Errorf("steady arrivals: jitter %v, want 0", j)
	}
	// In pairs every 40 ms: every packet is 20 ms off its predecessor's
	// transit, and J converges on 20 ms.
	if j := feed(func(i int) time.Duration { return time.Duration(i/2*2) * frame }, 200); j < 19*time.Millisecond || j > 20*time.Millisecond {
		t.Errorf("arrivals in pairs: jitter %v, want just under 20ms", j)
	}
	// A phone back from a minute's hold with its timestamps where it left
	// them: one transit step of a minute is not jitter.
	if j := feed(func(i int) time.Duration {
		if i >= 50 {
			return time.Duration(i)*frame + time.Minute
		}
		return time.Duration(i) * frame
	}, 100); j != 0 {
		t.Errorf("after a pause: jitter %v, want 0", j)
	}
	// Without the kernel's arrival times nothing is estimated.
	var r reception
	for i := range 10 {
		r.audio(0, uint32(i*FrameSamples), ClockRate)
	}
	if j := r.figures(0).Jitter; j != 0 {
		t.Errorf("no arrival times: jitter %v", j)
	}
}

// TestReceptionSize: the figures cost a session few bytes.
func TestReceptionSize(t *testing.T) {
	if n := unsafe.Sizeof(reception{}); n > 56 {
		t.Errorf("reception is %d bytes, want at most 56", n)
	}
}

// TestSessionJitterArrivalTimes: a session estimates jitter from when the
// kernel received each datagram, not from when it was polled (the mixer
// polls once a tick). Packets sent every 20 ms and polled all at once show
// little jitter; packets sent back to back with timestamps 20 ms apart
// show 20 ms.
func TestSessionJitterArrivalTimes(t *testing.T) {
	phone := listenLoopback(t)
	stream := func(ssrc uint32, paced bool) Reception {
		s := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMU, Direction: SendRecv})
		payload := make([]byte, FrameSamples)
		const n = 40
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := range n {
			if paced {
				<-tick.C
			}
			send(t, phone, s.LocalAddr(), rtpPacket(t, PayloadTypePCMU, uint16(i), uint32(i*FrameSamples), ssrc, payload))
		}
		var h nopHandler
		pollFor(t, s, time.Now(), &h, n)
		return s.Reception()
	}
	paced := stream(1, true)
	burst := stream(2, false)
	t.Logf("jitter: paced %v, back to back %v", paced.Jitter, burst.Jitter)
	if paced.Received != 40 || paced.Lost != 0 || burst.Received != 40 || burst.Lost != 0 {
		t.Errorf("received %d and %d, lost %d and %d; want 40, 40, 0, 0", paced.Received, burst.Received, paced.Lost, burst.Lost)
	}
	// Generous bounds: the machine is shared, so the pacing is rough.
	// Timed by the poll, the paced stream would show 18.5 ms
	// (20 ms × (1 − (15/16)³⁹)), as the burst does.
	if paced.Jitter <= 0 || paced.Jitter > 12*time.Millisecond {
		t.Errorf("paced stream polled at once: jitter %v, want above 0 and well under 18.5ms", paced.Jitter)
	}
	if burst.Jitter < 12*time.Millisecond || burst.Jitter > 21*time.Millisecond {
		t.Errorf("back-to-back stream: jitter %v, want about 20ms", burst.Jitter)
	}
}

// BenchmarkReception is what a packet costs the loss and jitter figures.
func BenchmarkReception(b *testing.B) {
	var r reception
	arrival := time.Now().UnixNano()
	var seq uint16
	var ts uint32
	for b.Loop() {
		r.packet(1, seq)
		r.audio(arrival, ts, ClockRate)
		seq++
		ts += FrameSamples
		arrival += int64(20 * time.Millisecond)
	}
}

// TestEndpointTakeStats: TakeStats hands out what grew since the last
// time, so the deltas sum to the totals; a second endpoint on the same
// session (a call moved to another room) does not take the loss again.
func TestEndpointTakeStats(t *testing.T) {
	phone := listenLoopback(t)
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMU, Direction: SendRecv})
	payload := make([]byte, FrameSamples)
	seq := 0
	// stream sends n packets, all but those where drop says so, and
	// lets ep take them in and play them.
	stream := func(ep *Endpoint, n int, drop func(int) bool) {
		t.Helper()
		sent := 0
		for range n {
			if !drop(seq) {
				send(t, phone, sess.LocalAddr(), rtpPacket(t, PayloadTypePCMU, uint16(seq), uint32(seq*FrameSamples), 9, payload))
				sent++
			}
			seq++
		}
		rx := NewRecvBuffer()
		deadline := time.Now().Add(2 * time.Second)
		for got := 0; got < sent; got += ep.Receive(time.Now(), rx) {
			if time.Now().After(deadline) {
				t.Fatalf("received %d datagrams, want %d", got, sent)
			}
		}
		var pcm [FrameSamples]int16
		for range n {
			ep.Pull(pcm[:])
		}
	}
	ep := NewEndpoint(sess)
	stream(&ep, 20, func(i int) bool { return i == 5 || i == 15 })
	d := ep.TakeStats()
	if d.Lost != 2 || d.Buffer.Packets != 18 || d.Buffer.Concealed < 2*FrameSamples {
		t.Errorf("first take: %+v, want 2 lost, 18 packets, at least %d samples concealed", d, 2*FrameSamples)
	}
	if d.Jitter <= 0 {
		t.Errorf("first take: jitter %v, want above 0 (the packets came at once, 20 ms of timestamp apart)", d.Jitter)
	}
	if again := ep.TakeStats(); again.Lost != 0 || again.Buffer != (JitterStats{}) {
		t.Errorf("second take with nothing new: %+v", again)
	}
	if ep.JitterStats().Packets != 18 {
		t.Errorf("JitterStats %+v, want the totals still", ep.JitterStats())
	}
	moved := NewEndpoint(sess)
	stream(&moved, 10, func(i int) bool { return i == 25 })
	if d := moved.TakeStats(); d.Lost != 1 || d.Buffer.Packets != 9 {
		t.Errorf("after a move: %+v, want the 1 new packet lost and 9 played", d)
	}
	if r := sess.Reception(); r.Lost != 3 || r.Received != 27 {
		t.Errorf("session: %+v, want 3 lost, 27 received", r)
	}
	var zero Endpoint
	if d := zero.TakeStats(); d != (LiveStats{}) {
		t.Errorf("zero endpoint: %+v", d)
	}
}

// FuzzReception drives the receive figures with arbitrary packets: each
// 7-byte record is an SSRC choice, a sequence number, a timestamp step
// and an arrival step (0: no kernel stamp). The jitter stays within
// [0, maxTransitStep], and the loss handed out by takeReception never
// goes back: its sum is the highest loss seen.
func FuzzReception(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 160, 0, 20, 0, 0, 3, 0, 160, 0, 20})                      // a loss
	f.Add([]byte{0, 0, 1, 0, 160, 0, 20, 0, 0, 3, 0, 160, 0, 20, 0, 0, 2, 0, 0, 0, 1}) // then late
	f.Add([]byte{0, 0xff, 0xff, 0, 160, 0, 20, 1, 0, 5, 0x80, 0, 0xff, 0})             // wrap, new SSRC
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 0, 0x80, 1, 0, 0, 0x7f, 0xff})                   // a jump
	s := newTestSession(f, Params{Codec: PCMU})
	f.Fuzz(func(t *testing.T, data []byte) {
		s.mu.Lock()
		s.recv = reception{}
		s.mu.Unlock()
		var taken, highest uint64
		var ts uint32
		arrival := int64(1e18)
		for ; len(data) >= 7; data = data[7:] {
			ssrc := uint32(data[0] & 1)
			seq := uint16(data[1])<<8 | uint16(data[2])
			ts += uint32(int16(uint16(data[3])<<8|uint16(data[4]))) * 8
			step := int64(int16(uint16(data[5])<<8 | uint16(data[6])))
			arrival += step * int64(time.Millisecond)
			at := arrival
			if step == 0 {
				at = 0
			}
			s.mu.Lock()
			s.recv.packet(ssrc, seq)
			s.recv.audio(at, ts, ClockRate)
			highest = max(highest, s.recv.figures(0).Lost)
			s.mu.Unlock()
			lost, jitter := s.takeReception()
			taken += lost
			if jitter < 0 || jitter > time.Duration(maxTransitStep) {
				t.Fatalf("jitter %v", jitter)
			}
			if taken != highest {
				t.Fatalf("taken %d in all, the loss reached %d", taken, highest)
			}
		}
	})
}

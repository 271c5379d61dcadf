package media

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzSourceLearning drives the strict-source state machine with packets
// from a few addresses, signalling and the passing of time. Each 3-byte op
// is a kind and two argument bytes:
//
//	kind%4 == 0, 1: a packet from address arg0%len(addrs), sequence number
//	                arg1 plus the kind's high bits (so runs can form)
//	kind%4 == 2:    SetParams naming address arg0%len(addrs) (0: none),
//	                direction arg1%4
//	kind%4 == 3:    time passes: arg0*arg1 ms
//
// Invariants: no panic; a packet handed to the handler comes from the
// session's source; the played address changes only to the SDP address or,
// after signalling, to an address that sent Probation consecutive sequence
// numbers since that signalling; each datagram is counted once, and handed
// over exactly when it is accepted and the direction receives.
func FuzzSourceLearning(f *testing.F) {
	// Seeds: a phone at its SDP address; a phone behind NAT; a stranger
	// spraying after the phone fell silent; a refresh and a move.
	f.Add([]byte{2, 1, 0, 0, 1, 10, 0, 1, 11, 0, 3, 12})
	f.Add([]byte{2, 1, 0, 0, 2, 10, 0, 2, 11, 0, 2, 12, 0, 2, 13, 0, 2, 14})
	f.Add([]byte{2, 1, 0, 0, 1, 1, 3, 50, 100, 0, 3, 1, 0, 3, 2, 0, 3, 3, 0, 3, 4, 0, 3, 5})
	f.Add([]byte{2, 0, 0, 0, 2, 1, 0, 2, 2, 0, 2, 3, 0, 2, 4, 2, 0, 0, 0, 4, 9, 0, 4, 10, 0, 4, 11, 0, 4, 12, 0, 2, 5})
	f.Add([]byte{2, 1, 0, 0, 2, 1, 0, 2, 2, 0, 2, 3, 0, 2, 4, 2, 1, 3, 3, 255, 255, 0, 3, 7, 0, 3, 8, 0, 3, 9, 0, 3, 10})
	addrs := []netip.AddrPort{
		{},
		netip.MustParseAddrPort("10.1.2.3:4000"),
		netip.MustParseAddrPort("198.51.100.7:61000"),
		netip.MustParseAddrPort("203.0.113.66:5004"),
		netip.MustParseAddrPort("203.0.113.66:5006"),
		netip.MustParseAddrPort("[2001:db8::1]:5004"),
	}
	s, err := NewSession(listenLoopback(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	payload := make([]byte, 20)
	f.Fuzz(func(t *testing.T, ops []byte) {
		// A fresh state for every input, on the one socket.
		now := base
		s.mu.Lock()
		s.src, s.learning, s.learnSince, s.cands, s.candClock = netip.AddrPort{}, true, 0, [probeSlots]candidate{}, 0
		s.provenAt.Store(0)
		s.mu.Unlock()
		s.SetClock(func() time.Time { return time.Unix(0, now) })
		remote := netip.AddrPort{}
		dir := SendRecv
		s.SetParams(Params{Codec: PCMU, TelephoneEventPT: 101})

		// The model: what was played last, and per address the run of
		// consecutive sequence numbers since the last signalling.
		var played netip.AddrPort
		signalled := true // the first source needs no signalling before it
		runs := map[netip.AddrPort]int{}
		lastSeq := map[netip.AddrPort]uint16{}
		var rec recorder
		for len(ops) >= 3 {
			kind, a0, a1 := ops[0], ops[1], ops[2]
			ops = ops[3:]
			switch kind % 4 {
			case 0, 1:
				from := addrs[1+int(a0)%(len(addrs)-1)]
				seq := uint16(kind>>2)<<8 | uint16(a1)
				if last, ok := lastSeq[from]; ok && runs[from] > 0 && seq == last+1 {
					runs[from]++
				} else {
					runs[from] = 1
				}
				lastSeq[from] = seq
				pkt := rtpPacket(t, 0, seq, uint32(seq)*160, 1, payload)
				before, n := s.Stats(), len(rec.audio)
				s.handle(now, 0, from, pkt, &rec)
				after := s.Stats()
				counted := (after.Strangers - before.Strangers) + (after.Unproven - before.Unproven) + (after.PacketsIn - before.PacketsIn)
				if counted != 1 {
					t.Fatalf("a packet counted %d times: %+v -> %+v", counted, before, after)
				}
				accepted := after.PacketsIn != before.PacketsIn
				if delivered := len(rec.audio) != n; delivered != (accepted && dir.Receives()) {
					t.Fatalf("handed over %v, accepted %v, direction %v", delivered, accepted, dir)
				}
				if !accepted {
					continue
				}
				if got := s.RemoteAddr(); got != from || !s.Proven() {
					t.Fatalf("played a packet from %v; source %v, proven %v", from, got, s.Proven())
				}
				if from != played {
					switch {
					case from == remote:
						// The SDP address: named by signalling.
					case !signalled:
						t.Fatalf("played %v after %v with no signalling in between", from, played)
					case runs[from] < Probation:
						t.Fatalf("learned %v after a run of %d", from, runs[from])
					}
					played = from
					signalled = false
				}
			case 2:
				remote = addrs[int(a0)%len(addrs)]
				dir = Direction(a1 % 4)
				s.SetParams(Params{Remote: remote, Codec: PCMU, TelephoneEventPT: 101, Direction: dir})
				signalled = true
				clear(runs)
			case 3:
				now += int64(a0) * int64(a1) * int64(time.Millisecond)
			}
		}
	})
}

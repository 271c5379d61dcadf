package media

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// The strict-source state machine, driven through handle with an injected
// clock (no sockets needed for the receive side).

var (
	sdpAddr  = netip.MustParseAddrPort("10.1.2.3:4000")      // what signalling said
	natAddr  = netip.MustParseAddrPort("198.51.100.7:61000") // where a phone behind NAT sends from
	stranger = netip.MustParseAddrPort("203.0.113.66:5004")
	moved    = netip.MustParseAddrPort("198.51.100.8:62000")
)

// strictRig feeds packets to one session at a clock the test moves.
type strictRig struct {
	t   *testing.T
	s   *Session
	now int64
	rec recorder
}

func newStrictRig(t *testing.T, remote netip.AddrPort) *strictRig {
	r := &strictRig{t: t, now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixNano()}
	r.s = newTestSession(t, Params{})
	r.s.SetClock(func() time.Time { return time.Unix(0, r.now) })
	r.s.SetParams(Params{Remote: remote, Codec: PCMU, TelephoneEventPT: 101})
	return r
}

// packet delivers one audio packet from from with sequence number seq
// (payload byte tag) and reports whether the handler got it.
func (r *strictRig) packet(from netip.AddrPort, seq uint16, tag byte) bool {
	r.t.Helper()
	before := len(r.rec.audio)
	r.s.handle(r.now, 0, from, rtpPacket(r.t, 0, seq, uint32(seq)*160, 7, []byte{tag}), &r.rec)
	return len(r.rec.audio) == before+1
}

// run sends n packets from from with consecutive sequence numbers from
// seq, 20 ms apart, and returns how many were played.
func (r *strictRig) run(from netip.AddrPort, seq uint16, n int) int {
	r.t.Helper()
	played := 0
	for i := range n {
		if r.packet(from, seq+uint16(i), 0) {
			played++
		}
		r.now += int64(20 * time.Millisecond)
	}
	return played
}

func TestStrictSDPAddressLearnedAtOnce(t *testing.T) {
	r := newStrictRig(t, sdpAddr)
	if r.s.Proven() || !r.s.ProvenAt().IsZero() {
		t.Fatal("proven before any packet")
	}
	if !r.packet(sdpAddr, 500, 1) {
		t.Fatal("first packet from the SDP address not played")
	}
	if !r.s.Proven() || r.s.ProvenAt().UnixNano() != r.now || r.s.RemoteAddr() != sdpAddr {
		t.Errorf("proven %v at %v, source %v", r.s.Proven(), r.s.ProvenAt(), r.s.RemoteAddr())
	}
	// A stranger's packets are dropped however they are numbered.
	if n := r.run(stranger, 1, 50); n != 0 {
		t.Errorf("%d stranger packets played", n)
	}
	if st := r.s.Stats(); st.Strangers != 50 || st.PacketsIn != 1 || st.Unproven != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestStrictProbation(t *testing.T) {
	// A phone behind NAT: its SDP names a private address, its packets come
	// from a public one. Learned after Probation consecutive packets; the
	// ones before are dropped and counted.
	r := newStrictRig(t, sdpAddr)
	for i, seq := range []uint16{65534, 65535, 0} { // across the wrap
		if r.packet(natAddr, seq, byte(i)) {
			t.Fatalf("packet %d played in probation", i)
		}
		if r.s.Proven() {
			t.Fatalf("proven after %d packets", i+1)
		}
	}
	if !r.packet(natAddr, 1, 3) {
		t.Fatal("the packet completing probation was not played")
	}
	if !r.s.Proven() || r.s.RemoteAddr() != natAddr {
		t.Fatalf("source %v, proven %v", r.s.RemoteAddr(), r.s.Proven())
	}
	if st := r.s.Stats(); st.Unproven != Probation-1 || st.PacketsIn != 1 || st.Strangers != 0 {
		t.Errorf("stats %+v", st)
	}
	// A gap, a repeat or a step back restarts the run.
	r2 := newStrictRig(t, sdpAddr)
	for _, seq := range []uint16{10, 11, 13, 14, 15, 15, 16, 17, 16, 17, 18} {
		if r2.packet(natAddr, seq, 0) {
			t.Fatalf("played at seq %d before %d consecutive", seq, Probation)
		}
	}
	if !r2.packet(natAddr, 19, 0) {
		t.Error("16..19 did not prove the source")
	}
}

func TestStrictNoTakeoverAfterSilence(t *testing.T) {
	// The caller stops sending (muted, silence suppression): however long
	// it is silent, a stranger's perfect run is not learned without
	// signalling, and the caller is played again when it resumes.
	for _, remote := range []netip.AddrPort{sdpAddr, {}} {
		r := newStrictRig(t, remote)
		src := sdpAddr
		if !remote.IsValid() {
			src = natAddr // learned by probation
		}
		r.run(src, 100, 10)
		if !r.s.Proven() || r.s.RemoteAddr() != src {
			t.Fatalf("remote %v: not proven", remote)
		}
		lastRx := r.s.LastReceived()
		for _, silence := range []time.Duration{2 * time.Second, 5 * time.Second, time.Hour} {
			r.now += int64(silence)
			if n := r.run(stranger, uint16(silence), 200); n != 0 {
				t.Fatalf("remote %v: after %v of silence %d stranger packets played", remote, silence, n)
			}
		}
		if !r.s.LastReceived().Equal(lastRx) {
			t.Errorf("strangers moved LastReceived to %v", r.s.LastReceived())
		}
		if r.s.RemoteAddr() != src {
			t.Errorf("source became %v", r.s.RemoteAddr())
		}
		if n := r.run(src, 110, 5); n != 5 {
			t.Errorf("caller resumed: %d of 5 played", n)
		}
	}
}

func TestStrictSDPAddressWinsOverProbation(t *testing.T) {
	// A stranger wins the set-up race by probation; the phone's first
	// packet from its SDP address takes the call back at once.
	r := newStrictRig(t, sdpAddr)
	if n := r.run(stranger, 1, Probation); n != 1 || r.s.RemoteAddr() != stranger {
		t.Fatalf("stranger's probation: %d played, source %v", n, r.s.RemoteAddr())
	}
	if !r.packet(sdpAddr, 9000, 1) || r.s.RemoteAddr() != sdpAddr {
		t.Fatalf("SDP address not preferred: source %v", r.s.RemoteAddr())
	}
	if n := r.run(stranger, Probation+1, 20); n != 0 {
		t.Errorf("%d packets of the displaced stranger played", n)
	}
}

func TestStrictProbationAmidSpray(t *testing.T) {
	// Strangers spraying from many addresses, two packets between each of
	// the phone's, do not keep a phone behind NAT from proving itself.
	r := newStrictRig(t, sdpAddr)
	sprayers := make([]netip.AddrPort, 7)
	for i := range sprayers {
		sprayers[i] = netip.AddrPortFrom(stranger.Addr(), uint16(6000+i))
	}
	k := 0
	for i := range Probation {
		played := r.packet(natAddr, uint16(300+i), 0)
		if played != (i == Probation-1) {
			t.Fatalf("phone packet %d played %v", i, played)
		}
		for range 2 {
			r.packet(sprayers[k%len(sprayers)], uint16(k*7), 0)
			k++
		}
	}
	if r.s.RemoteAddr() != natAddr {
		t.Fatalf("source %v", r.s.RemoteAddr())
	}
}

func TestStrictRelearnAfterSignalling(t *testing.T) {
	r := newStrictRig(t, sdpAddr)
	r.run(natAddr, 1, Probation+5)
	// A session refresh: the same description again. The current source is
	// still played, and a phone that moved proves its new address.
	r.s.SetParams(Params{Remote: sdpAddr, Codec: PCMU, TelephoneEventPT: 101})
	if n := r.run(natAddr, 100, 10); n != 10 {
		t.Fatalf("after a refresh the source lost %d of 10 packets", 10-n)
	}
	if n := r.run(moved, 7, Probation); n != 1 || r.s.RemoteAddr() != moved {
		t.Fatalf("new address not learned after signalling: %d played, source %v", n, r.s.RemoteAddr())
	}
	// Learning closed with it: the old address is now a stranger.
	if n := r.run(natAddr, 110, 10); n != 0 {
		t.Errorf("old source still played: %d", n)
	}
	if st := r.s.Stats(); st.Strangers != 10+Probation-1 {
		t.Errorf("stats %+v", st)
	}
}

func TestStrictRelearnWindowCloses(t *testing.T) {
	r := newStrictRig(t, sdpAddr)
	r.run(natAddr, 1, Probation)
	r.s.SetParams(Params{Remote: sdpAddr, Codec: PCMU, TelephoneEventPT: 101})
	// The source keeps sending for the window: learning closes.
	r.run(natAddr, 10, int(RelearnWindow/(20*time.Millisecond))+2)
	if n := r.run(stranger, 1, 20); n != 0 || r.s.RemoteAddr() != natAddr {
		t.Errorf("after the window a stranger got %d packets played, source %v", n, r.s.RemoteAddr())
	}
}

func TestStrictRefreshAtSDPAddressClosesAtOnce(t *testing.T) {
	// A phone sending from its SDP address confirms itself with its first
	// packet after a refresh: nothing is left to learn.
	r := newStrictRig(t, sdpAddr)
	r.run(sdpAddr, 1, 3)
	r.s.SetParams(Params{Remote: sdpAddr, Codec: PCMA})
	r.run(sdpAddr, 4, 1)
	if n := r.run(stranger, 1, 20); n != 0 {
		t.Errorf("%d stranger packets played after the refresh", n)
	}
}

func TestStrictNewSDPAddress(t *testing.T) {
	// A re-INVITE names a new address: the phone's first packet from it is
	// learned at once; meanwhile the old source is played.
	r := newStrictRig(t, sdpAddr)
	r.run(sdpAddr, 1, 3)
	r.s.SetParams(Params{Remote: moved, Codec: PCMU})
	if r.s.RemoteAddr() != sdpAddr {
		t.Errorf("the proven source was dropped by signalling alone: %v", r.s.RemoteAddr())
	}
	if n := r.run(sdpAddr, 4, 3); n != 3 {
		t.Errorf("old source lost %d packets before the move", 3-n)
	}
	if !r.packet(moved, 1, 0) || r.s.RemoteAddr() != moved {
		t.Fatalf("source %v", r.s.RemoteAddr())
	}
	if n := r.run(sdpAddr, 7, 5); n != 0 {
		t.Errorf("%d packets of the old address played", n)
	}
}

func TestStrictHandleNoAllocs(t *testing.T) {
	r := newStrictRig(t, sdpAddr)
	var h nopHandler
	pkt := rtpPacket(t, 0, 1, 0, 7, make([]byte, FrameSamples))
	seq := uint16(0)
	feed := func(from netip.AddrPort) {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		r.s.handle(r.now, 0, from, pkt, &h)
	}
	for _, from := range []netip.AddrPort{natAddr, stranger, sdpAddr} {
		if a := testing.AllocsPerRun(200, func() { feed(from) }); a != 0 {
			t.Errorf("handle from %v: %v allocs", from, a)
		}
	}
	// Probation that never completes (every other sequence number), from
	// more addresses than there are slots.
	p := newStrictRig(t, sdpAddr)
	i := 0
	if a := testing.AllocsPerRun(200, func() {
		i++
		seq += 2
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		p.s.handle(p.now, 0, netip.AddrPortFrom(stranger.Addr(), uint16(i%9)), pkt, &h)
	}); a != 0 || p.s.Proven() {
		t.Errorf("probation: %v allocs, proven %v", a, p.s.Proven())
	}
}

func TestSessionHeldSince(t *testing.T) {
	s := newTestSession(t, Params{})
	const base = 4_000_000_000 // seconds: later than the session's creation
	now := time.Unix(base, 0)
	s.SetClock(func() time.Time { return now })
	if _, held := s.HeldSince(); held {
		t.Fatal("held at start")
	}
	for _, step := range []struct {
		d         Direction
		held      bool
		sinceSecs int64
	}{
		{SendRecv, false, 0}, {RecvOnly, true, base + 2}, {Inactive, true, base + 2}, {SendOnly, true, base + 2},
		{SendRecv, false, 0}, {Inactive, true, base + 6}, {Inactive, true, base + 6},
	} {
		now = now.Add(time.Second)
		s.SetParams(Params{Codec: PCMU, Direction: step.d})
		since, held := s.HeldSince()
		if held != step.held || (held && since.Unix() != step.sinceSecs) {
			t.Errorf("at %d after %v: held %v since %v, want %v since %d", now.Unix(), step.d, held, since.Unix(), step.held, step.sinceSecs)
		}
		// Coming off hold restarts the count of silence.
		if now.Unix() == base+5 && !s.LastReceived().Equal(now) {
			t.Errorf("LastReceived %v after the resume at %v", s.LastReceived(), now)
		}
	}
}

func TestSessionSendGrace(t *testing.T) {
	// Nobody sends from the SDP address: we send there for SendGrace from
	// the first packet, then nothing, until a packet proves the address.
	sink := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(sink), Codec: PCMU})
	start := time.Unix(7000, 0)
	var h nopHandler
	const tick = 20 * time.Millisecond
	sent, refused, got := 0, 0, 0
	for i := range int(2 * SendGrace / tick) {
		s.Poll(start.Add(time.Duration(i)*tick), &h) // the mixer polls, then writes
		switch err := s.WriteAudio(make([]byte, FrameSamples)); {
		case err == nil:
			sent++
			if _, _, ok := recvRTP(t, sink, time.Second); ok {
				got++
			}
		case errors.Is(err, ErrUnproven):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if want := int(SendGrace/tick) + 1; sent != want {
		t.Errorf("sent %d packets in the grace, want %d", sent, want)
	}
	if _, _, ok := recvRTP(t, sink, 200*time.Millisecond); ok {
		got++
	}
	if got != sent {
		t.Errorf("the SDP address received %d packets, %d sent", got, sent)
	}
	if st := s.Stats(); st.Unsent != uint64(refused) || st.PacketsOut != uint64(sent) {
		t.Errorf("stats %+v, refused %d", st, refused)
	}
	// The far end speaks: its address is proven and sending resumes, with
	// the clock having run on meanwhile.
	send(t, sink, s.LocalAddr(), rtpPacket(t, 0, 1, 0, 9, []byte{1}))
	later := start.Add(3 * SendGrace)
	pollFor(t, s, later, &h, 1)
	if !s.Proven() {
		t.Fatal("not proven by a packet from the SDP address")
	}
	if err := s.WriteAudio(make([]byte, FrameSamples)); err != nil {
		t.Fatal(err)
	}
	p, _, ok := recvRTP(t, sink, time.Second)
	if !ok {
		t.Fatal("nothing sent after the address was proven")
	}
	if p.SequenceNumber != s.hdr.SequenceNumber-1 {
		t.Errorf("sequence numbers skipped while not sending")
	}
}

func TestSessionSendGraceBeforePoll(t *testing.T) {
	// Written without ever being polled, the session times the grace on
	// its own clock.
	sink := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(sink), Codec: PCMU})
	now := time.Unix(100, 0)
	s.SetClock(func() time.Time { return now })
	if err := s.WriteAudio([]byte{1}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(SendGrace + time.Millisecond)
	if err := s.WriteAudio([]byte{1}); !errors.Is(err, ErrUnproven) {
		t.Errorf("after the grace: %v", err)
	}
}

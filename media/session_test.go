package media

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newTestSession(t testing.TB, p Params) *Session {
	t.Helper()
	s, err := NewSession(listenLoopback(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetParams(p)
	t.Cleanup(func() { s.Close() })
	return s
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

type audioRec struct {
	ssrc, ts uint32
	codec    Codec
	payload  []byte
}

type eventRec struct {
	ssrc, ts uint32
	payload  []byte
}

// recorder is a Handler that keeps copies of what it is given.
type recorder struct {
	audio  []audioRec
	events []eventRec
}

func (r *recorder) Audio(ssrc, ts uint32, c Codec, p []byte) {
	r.audio = append(r.audio, audioRec{ssrc, ts, c, bytes.Clone(p)})
}

func (r *recorder) Event(ssrc, ts uint32, p []byte) {
	r.events = append(r.events, eventRec{ssrc, ts, bytes.Clone(p)})
}

func (r *recorder) total() int { return len(r.audio) + len(r.events) }

// pollFor polls s with the time now until it has read n datagrams (or
// fails after a second: loopback delivery is fast but not instant).
func pollFor(t testing.TB, s *Session, now time.Time, h Handler, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	got := 0
	for got < n {
		got += s.Poll(now, h)
		if got < n {
			if time.Now().After(deadline) {
				t.Fatalf("read %d datagrams, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// rtpPacket builds a datagram.
func rtpPacket(t testing.TB, pt uint8, seq uint16, ts, ssrc uint32, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func send(t testing.TB, from *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// recvRTP reads one RTP packet from c, or reports that none came.
func recvRTP(t testing.TB, c *net.UDPConn, wait time.Duration) (*rtp.Packet, netip.AddrPort, bool) {
	t.Helper()
	buf := make([]byte, 2000)
	c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, netip.AddrPort{}, false
		}
		t.Fatal(err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		t.Fatalf("bad RTP from the session: %v", err)
	}
	return &p, from, true
}

func TestSessionExchange(t *testing.T) {
	a := newTestSession(t, Params{Codec: PCMU, TelephoneEventPT: 101})
	b := newTestSession(t, Params{Codec: PCMA, TelephoneEventPT: 101})
	a.SetParams(Params{Remote: b.LocalAddr(), Codec: PCMU, TelephoneEventPT: 101})
	b.SetParams(Params{Remote: a.LocalAddr(), Codec: PCMA, TelephoneEventPT: 101})

	frames := make([][]byte, 3)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte(i + 1)}, FrameSamples)
		if err := a.WriteAudio(frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	ev := []byte{5, 0x0a, 0x01, 0x40} // digit 5, volume 10, duration 320
	if err := a.WriteEvent(ev, true, 0); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	now := time.Now()
	pollFor(t, b, now, &rec, 4)
	if len(rec.audio) != 3 || len(rec.events) != 1 {
		t.Fatalf("got %d audio, %d events", len(rec.audio), len(rec.events))
	}
	ts0 := rec.audio[0].ts
	for i, r := range rec.audio {
		if r.ssrc != a.SSRC() || r.codec != PCMU || r.ts != ts0+uint32(i*FrameSamples) || !bytes.Equal(r.payload, frames[i]) {
			t.Errorf("audio %d: %+v", i, r)
		}
	}
	if e := rec.events[0]; e.ssrc != a.SSRC() || e.ts != ts0+3*FrameSamples || !bytes.Equal(e.payload, ev) {
		t.Errorf("event %+v", e)
	}
	if st := b.Stats(); st.PacketsIn != 4 || st.Malformed != 0 || st.UnknownPT != 0 || st.Strangers != 0 {
		t.Errorf("b stats %+v", st)
	}
	if st := a.Stats(); st.PacketsOut != 4 || st.SendErrors != 0 {
		t.Errorf("a stats %+v", st)
	}
	if got := b.LastReceived(); !got.Equal(time.Unix(0, now.UnixNano())) {
		t.Errorf("LastReceived %v, want %v", got, now)
	}
	if b.RemoteAddr() != a.LocalAddr() {
		t.Errorf("b latched %v, want %v", b.RemoteAddr(), a.LocalAddr())
	}

	// And back, in PCMA.
	if err := b.WriteAudio(frames[0]); err != nil {
		t.Fatal(err)
	}
	var back recorder
	pollFor(t, a, now, &back, 1)
	if len(back.audio) != 1 || back.audio[0].codec != PCMA || back.audio[0].ssrc != b.SSRC() {
		t.Errorf("back: %+v", back.audio)
	}
}

func TestSessionSendHeaders(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMA, TelephoneEventPT: 101})
	var pkts []*rtp.Packet
	for range 5 {
		if err := s.WriteAudio(make([]byte, FrameSamples)); err != nil {
			t.Fatal(err)
		}
	}
	// An event: three packets sharing a timestamp, then the clock moves on
	// by the event's duration.
	s.WriteEvent([]byte{1, 10, 0, 160}, true, 0)
	s.WriteEvent([]byte{1, 10, 1, 64}, false, 0)
	s.WriteEvent([]byte{1, 0x8a, 1, 224}, false, 480)
	s.WriteAudio(make([]byte, FrameSamples))
	for range 9 {
		p, from, ok := recvRTP(t, peer, time.Second)
		if !ok {
			t.Fatal("packet missing")
		}
		if from != s.LocalAddr() {
			t.Errorf("sent from %v, not %v", from, s.LocalAddr())
		}
		pkts = append(pkts, p)
	}
	for i, p := range pkts {
		if p.Version != 2 || p.SSRC != s.SSRC() || p.Padding || p.Extension || len(p.CSRC) != 0 {
			t.Errorf("packet %d header %+v", i, p.Header)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: seq %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
	}
	ts0 := pkts[0].Timestamp
	for i := range 5 {
		p := pkts[i]
		if p.PayloadType != PayloadTypePCMA || p.Timestamp != ts0+uint32(i*FrameSamples) || p.Marker != (i == 0) || len(p.Payload) != FrameSamples {
			t.Errorf("audio packet %d: pt %d ts %d marker %v len %d", i, p.PayloadType, p.Timestamp-ts0, p.Marker, len(p.Payload))
		}
	}
	for i := 5; i < 8; i++ {
		p := pkts[i]
		if p.PayloadType != 101 || p.Timestamp != ts0+5*FrameSamples || p.Marker != (i == 5) {
			t.Errorf("event packet %d: pt %d ts %d marker %v", i, p.PayloadType, p.Timestamp-ts0, p.Marker)
		}
	}
	if p := pkts[8]; p.Timestamp != ts0+5*FrameSamples+480 || p.Marker {
		t.Errorf("audio after the event: ts %d marker %v", p.Timestamp-ts0, p.Marker)
	}
}

func TestSessionMalformed(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU, TelephoneEventPT: 101})
	valid := rtpPacket(t, 0, 1, 160, 42, make([]byte, FrameSamples))
	with := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	bad := [][]byte{
		{},
		{0x80},
		valid[:11],
		with(valid, func(b []byte) []byte { b[0] = 0x40; return b }), // version 1
		with(valid, func(b []byte) []byte { b[0] = 0x00; return b }), // version 0
		with(valid, func(b []byte) []byte { b[0] = 0xc0; return b }), // version 3
		with(valid, func(b []byte) []byte { // padding bit, padding count 0
			b[0] |= 0x20
			b[len(b)-1] = 0
			return b
		}),
		with(valid, func(b []byte) []byte { // padding longer than the payload
			b[0] |= 0x20
			b[len(b)-1] = 200
			return b
		}),
		with(valid[:12], func(b []byte) []byte { b[0] |= 0x20; return b }), // padding bit, no payload
		with(valid[:20], func(b []byte) []byte { b[0] |= 0x0f; return b }), // 15 CSRCs, not there
		with(valid[:14], func(b []byte) []byte { b[0] |= 0x10; return b }), // extension header cut
		with(valid, func(b []byte) []byte { // extension longer than the packet
			b[0] |= 0x10
			b[12], b[13], b[14], b[15] = 0xbe, 0xde, 0xff, 0xff
			return b
		}),
	}
	for _, b := range bad {
		send(t, peer, s.LocalAddr(), b)
	}
	// Not malformed, not delivered: RTCP multiplexed on the port, and a
	// payload type we did not negotiate.
	rtcp := []byte{0x80, 200, 0, 6, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	send(t, peer, s.LocalAddr(), rtcp)
	send(t, peer, s.LocalAddr(), rtpPacket(t, 96, 2, 320, 42, []byte{1, 2, 3}))
	send(t, peer, s.LocalAddr(), rtpPacket(t, 0, 3, 480, 42, nil)) // empty audio: not delivered
	padded := rtp.Packet{Header: rtp.Header{Version: 2, Padding: true, PaddingSize: 4, SequenceNumber: 4, Timestamp: 640, SSRC: 42}, Payload: []byte{9, 9, 9}}
	pb, err := padded.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	send(t, peer, s.LocalAddr(), pb)
	send(t, peer, s.LocalAddr(), valid)
	var rec recorder
	pollFor(t, s, time.Now(), &rec, len(bad)+5)
	st := s.Stats()
	if st.Malformed != uint64(len(bad)) || st.UnknownPT != 1 || st.PacketsIn != 4 {
		t.Errorf("stats %+v, want %d malformed", st, len(bad))
	}
	if len(rec.audio) != 2 || len(rec.events) != 0 {
		t.Fatalf("delivered %+v %+v", rec.audio, rec.events)
	}
	if !bytes.Equal(rec.audio[0].payload, []byte{9, 9, 9}) || !bytes.Equal(rec.audio[1].payload, valid[12:]) {
		t.Errorf("payloads %v / %d bytes", rec.audio[0].payload, len(rec.audio[1].payload))
	}
}

func TestSessionMalformedDoesNotProve(t *testing.T) {
	s := newTestSession(t, Params{Codec: PCMU})
	junk, real := listenLoopback(t), listenLoopback(t)
	// Malformed datagrams with what would be consecutive sequence numbers
	// do not count towards probation.
	for seq := range uint16(Probation) {
		send(t, junk, s.LocalAddr(), []byte{0x80, 0, 0, byte(seq), 0, 0, 0, 1}) // too short
	}
	send(t, junk, s.LocalAddr(), []byte("not rtp at all"))
	var rec recorder
	pollFor(t, s, time.Now(), &rec, Probation+1)
	if s.Proven() {
		t.Fatal("malformed datagrams proved a source")
	}
	for seq := range uint16(Probation) {
		send(t, real, s.LocalAddr(), rtpPacket(t, 0, 100+seq, 0, 1, []byte{byte(seq)}))
	}
	pollFor(t, s, time.Now(), &rec, Probation)
	if len(rec.audio) != 1 || rec.audio[0].payload[0] != Probation-1 || s.RemoteAddr() != addrOf(real) {
		t.Errorf("audio %+v, source %v, stats %+v", rec.audio, s.RemoteAddr(), s.Stats())
	}
	if st := s.Stats(); st.Strangers != 0 || st.Unproven != Probation-1 || st.Malformed != Probation+1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSessionDirection(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU, TelephoneEventPT: 101})
	s.WriteAudio([]byte{1})
	p0, _, ok := recvRTP(t, peer, time.Second)
	if !ok {
		t.Fatal("nothing sent")
	}
	for _, d := range []Direction{Inactive, RecvOnly} {
		s.SetParams(Params{Remote: addrOf(peer), Codec: PCMU, TelephoneEventPT: 101, Direction: d})
		for range 3 {
			if err := s.WriteAudio(make([]byte, FrameSamples)); err != nil {
				t.Errorf("%v: WriteAudio: %v", d, err)
			}
		}
		if err := s.WriteEvent([]byte{1, 2, 3, 4}, true, 0); err != nil {
			t.Errorf("%v: WriteEvent: %v", d, err)
		}
		if _, _, ok := recvRTP(t, peer, 50*time.Millisecond); ok {
			t.Errorf("%v: a packet was sent", d)
		}
	}
	if st := s.Stats(); st.PacketsOut != 1 {
		t.Errorf("stats %+v", st)
	}
	// Back to sendrecv: the clock kept running while on hold.
	s.SetParams(Params{Remote: addrOf(peer), Codec: PCMU, TelephoneEventPT: 101, Direction: SendRecv})
	s.WriteAudio(make([]byte, FrameSamples))
	p, _, ok := recvRTP(t, peer, time.Second)
	if !ok {
		t.Fatal("nothing sent after the hold")
	}
	if p.Timestamp != p0.Timestamp+1+6*FrameSamples || p.SequenceNumber != p0.SequenceNumber+1 || p.Marker {
		t.Errorf("after hold: ts +%d seq +%d marker %v", p.Timestamp-p0.Timestamp, p.SequenceNumber-p0.SequenceNumber, p.Marker)
	}

	// Receiving: inactive and sendonly deliver nothing (but count).
	for _, d := range []Direction{Inactive, SendOnly} {
		s.SetParams(Params{Remote: addrOf(peer), Codec: PCMU, TelephoneEventPT: 101, Direction: d})
		var rec recorder
		send(t, peer, s.LocalAddr(), rtpPacket(t, 0, 1, 0, 5, []byte{1}))
		send(t, peer, s.LocalAddr(), rtpPacket(t, 101, 2, 0, 5, []byte{1, 2, 3, 4}))
		pollFor(t, s, time.Now(), &rec, 2)
		if rec.total() != 0 {
			t.Errorf("%v: delivered %+v", d, rec)
		}
	}
	for _, tc := range []struct {
		d            Direction
		sends, recvs bool
		name         string
	}{{SendRecv, true, true, "sendrecv"}, {SendOnly, true, false, "sendonly"}, {RecvOnly, false, true, "recvonly"}, {Inactive, false, false, "inactive"}} {
		if tc.d.Sends() != tc.sends || tc.d.Receives() != tc.recvs || tc.d.String() != tc.name {
			t.Errorf("%v: %v %v %q", tc.d, tc.d.Sends(), tc.d.Receives(), tc.d.String())
		}
	}
}

func TestSessionNoTelephoneEvent(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU})
	if err := s.WriteEvent([]byte{1, 2, 3, 4}, true, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := recvRTP(t, peer, 50*time.Millisecond); ok {
		t.Error("event sent without a negotiated payload type")
	}
	// And PT 0 from the peer is audio, never an event; PT 101 is unknown.
	var rec recorder
	send(t, peer, s.LocalAddr(), rtpPacket(t, 101, 1, 0, 5, []byte{1, 2, 3, 4}))
	pollFor(t, s, time.Now(), &rec, 1)
	if rec.total() != 0 || s.Stats().UnknownPT != 1 {
		t.Errorf("rec %+v stats %+v", rec, s.Stats())
	}
}

func TestSessionNoRemote(t *testing.T) {
	s := newTestSession(t, Params{Codec: PCMU})
	if err := s.WriteAudio([]byte{1}); !errors.Is(err, ErrNoRemote) {
		t.Errorf("WriteAudio without remote: %v", err)
	}
}

func TestSessionFlush(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU})
	for i := range 5 {
		send(t, peer, s.LocalAddr(), rtpPacket(t, 0, uint16(i), uint32(i*160), 1, []byte{byte(i)}))
	}
	time.Sleep(20 * time.Millisecond) // let loopback deliver them
	s.Flush()
	send(t, peer, s.LocalAddr(), rtpPacket(t, 0, 5, 800, 1, []byte{5}))
	var rec recorder
	pollFor(t, s, time.Now(), &rec, 1)
	time.Sleep(10 * time.Millisecond)
	if n := s.Poll(time.Now(), &rec); n != 0 || len(rec.audio) != 1 || rec.audio[0].payload[0] != 5 {
		t.Errorf("after Flush: %d more, audio %+v", n, rec.audio)
	}
	if st := s.Stats(); st.PacketsIn != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSessionPollBound(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU})
	for i := range maxPerPoll + 8 {
		send(t, peer, s.LocalAddr(), rtpPacket(t, 0, uint16(i), uint32(i*160), 1, []byte{byte(i)}))
	}
	time.Sleep(20 * time.Millisecond)
	var rec recorder
	if n := s.Poll(time.Now(), &rec); n != maxPerPoll {
		t.Errorf("first poll read %d, want %d", n, maxPerPoll)
	}
	if n := s.Poll(time.Now(), &rec); n != 8 {
		t.Errorf("second poll read %d, want 8", n)
	}
	if n := s.Poll(time.Now(), &rec); n != 0 {
		t.Errorf("third poll read %d", n)
	}
	for i, a := range rec.audio {
		if a.payload[0] != byte(i) {
			t.Fatalf("packet %d out of order", i)
		}
	}
}

func TestSessionOversizedDatagram(t *testing.T) {
	peer := listenLoopback(t)
	s := newTestSession(t, Params{Remote: addrOf(peer), Codec: PCMU})
	big := rtpPacket(t, 0, 1, 0, 1, make([]byte, 3000))
	send(t, peer, s.LocalAddr(), big)
	var rec recorder
	pollFor(t, s, time.Now(), &rec, 1)
	// Truncated to maxPacket; the payload is what fit.
	if len(rec.audio) != 1 || len(rec.audio[0].payload) != maxPacket-12 {
		t.Errorf("audio %d", len(rec.audio))
	}
}

func TestSessionIPv6(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	s, err := NewSession(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip(err)
	}
	defer peer.Close()
	// Learned by probation; the packet that completes it is played.
	for seq := range uint16(Probation) {
		send(t, peer, s.LocalAddr(), rtpPacket(t, 8, seq, 0, 1, []byte{1}))
	}
	var rec recorder
	pollFor(t, s, time.Now(), &rec, Probation)
	if len(rec.audio) != 1 || rec.audio[0].codec != PCMA || s.RemoteAddr() != addrOf(peer) {
		t.Errorf("audio %+v latched %v want %v", rec.audio, s.RemoteAddr(), addrOf(peer))
	}
}

func TestSessionClose(t *testing.T) {
	closes := 0
	s, err := NewSession(listenLoopback(t), func() { closes++ })
	if err != nil {
		t.Fatal(err)
	}
	peer := listenLoopback(t)
	s.SetParams(Params{Remote: addrOf(peer), Codec: PCMU})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if closes != 1 {
		t.Errorf("onClose ran %d times", closes)
	}
	if err := s.WriteAudio([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAudio after Close: %v", err)
	}
	if n := s.Poll(time.Now(), &recorder{}); n != 0 {
		t.Errorf("Poll after Close: %d", n)
	}
	s.Flush() // must not hang or panic
	// Nil onClose is fine too.
	s2, _ := NewSession(listenLoopback(t), nil)
	s2.Close()
	s2.Close()
}

func TestSessionRandomStart(t *testing.T) {
	// SSRC, first sequence number and timestamp are random (RFC 3550
	// §5.1): two sessions do not share them.
	a := newTestSession(t, Params{})
	b := newTestSession(t, Params{})
	if a.SSRC() == b.SSRC() {
		t.Errorf("same SSRC %d", a.SSRC())
	}
	if got := slices.Compact([]uint32{a.hdr.Timestamp, b.hdr.Timestamp}); len(got) != 2 {
		t.Errorf("same initial timestamp")
	}
}

// nopHandler discards everything.
type nopHandler struct{ n int }

func (h *nopHandler) Audio(uint32, uint32, Codec, []byte) { h.n++ }
func (h *nopHandler) Event(uint32, uint32, []byte)        { h.n++ }

func TestSessionNoAllocs(t *testing.T) {
	a := newTestSession(t, Params{Codec: PCMU})
	b := newTestSession(t, Params{Codec: PCMU})
	a.SetParams(Params{Remote: b.LocalAddr(), Codec: PCMU})
	b.SetParams(Params{Remote: a.LocalAddr(), Codec: PCMU})
	payload := make([]byte, FrameSamples)
	var h nopHandler
	now := time.Now()
	// Warm up: each proves its address to the other, as in a call.
	b.WriteAudio(payload)
	pollFor(t, a, now, &h, 1)
	a.WriteAudio(payload)
	pollFor(t, b, now, &h, 1)
	if !a.Proven() || !b.Proven() {
		t.Fatal("not proven")
	}
	allocs := testing.AllocsPerRun(200, func() {
		if err := a.WriteAudio(payload); err != nil {
			t.Fatal(err)
		}
		for b.Poll(now, &h) == 0 {
		}
	})
	if allocs != 0 {
		t.Errorf("WriteAudio+Poll: %v allocs per packet", allocs)
	}
	// An empty poll does not allocate either.
	if allocs := testing.AllocsPerRun(100, func() { b.Poll(now, &h) }); allocs != 0 {
		t.Errorf("empty Poll: %v allocs", allocs)
	}
}

func BenchmarkSessionPollWrite(b *testing.B) {
	x := newTestSession(b, Params{Codec: PCMU})
	y := newTestSession(b, Params{Codec: PCMU})
	x.SetParams(Params{Remote: y.LocalAddr(), Codec: PCMU})
	y.SetParams(Params{Remote: x.LocalAddr(), Codec: PCMU})
	payload := make([]byte, FrameSamples)
	var h nopHandler
	now := time.Now()
	// Both prove each other's address first, as a call's first packets
	// do: an unproven x would stop sending after SendGrace.
	if err := y.WriteAudio(payload); err != nil {
		b.Fatal(err)
	}
	pollFor(b, x, now, &h, 1)
	if err := x.WriteAudio(payload); err != nil {
		b.Fatal(err)
	}
	pollFor(b, y, now, &h, 1)
	if !x.Proven() || !y.Proven() {
		b.Fatal("not proven")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := x.WriteAudio(payload); err != nil {
			b.Fatal(err)
		}
		for y.Poll(now, &h) == 0 {
		}
	}
}

// BenchmarkSessionHandle measures the per-datagram parse path alone: a
// valid packet from the proven source, one from a stranger (dropped), one
// while nothing is proven (probation), and malformed ones (which allocate:
// pion/rtp wraps its parse errors with fmt.Errorf).
func BenchmarkSessionHandle(b *testing.B) {
	from := netip.MustParseAddrPort("192.0.2.1:4000")
	stranger := netip.MustParseAddrPort("192.0.2.9:4000")
	valid := rtpPacket(b, 0, 1, 160, 42, make([]byte, FrameSamples))
	cutCSRC := bytes.Clone(valid[:20])
	cutCSRC[0] |= 0x0f
	for _, tc := range []struct {
		name   string
		from   netip.AddrPort
		data   []byte
		proven bool
	}{
		{"valid", from, valid, true}, {"stranger", stranger, valid, true}, {"probation", from, valid, false},
		{"short", from, valid[:8], true}, {"csrc-cut", from, cutCSRC, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newTestSession(b, Params{Codec: PCMU, TelephoneEventPT: 101})
			var h nopHandler
			now := time.Now().UnixNano()
			if tc.proven {
				s.SetParams(Params{Remote: from, Codec: PCMU, TelephoneEventPT: 101})
				s.handle(now, now, from, valid, &h)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.handle(now, now, tc.from, tc.data, &h)
			}
		})
	}
}

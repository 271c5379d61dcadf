package media

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"

	"chorus/media/opus"
)

// maxPacket is the largest datagram read; longer ones are truncated and
// then fail to parse.
const maxPacket = 1500

// maxSend is the largest packet a session's own buffer takes: an RTP
// header and 60 ms of G.711 or G.722. Opus sessions get a buffer of
// maxWideSend as well (see Session.SetParams), so that G.711 calls do not
// carry 800 bytes they never use.
const maxSend = 12 + 480

// maxWideSend is the largest packet we send at all: an RTP header and the
// largest single-frame Opus packet, 1276 bytes (RFC 6716 §3.2.1; 20 ms at
// 510 kbit/s), which any bitrate a peer may ask for fits.
const maxWideSend = 12 + opus.MaxPacketBytes

// maxPerPoll bounds the packets one Poll drains, so one flooding peer cannot
// hold up a mixer tick.
const maxPerPoll = 32

// Probation is how many packets with consecutive sequence numbers one
// address must send before it is learned as the session's source (strict
// RTP, as Asterisk's strictrtp with its default probation of 4).
const Probation = 4

// probeSlots is how many addresses may be in probation at once, so that a
// stranger's packets interleaved with the caller's do not reset the
// caller's run.
const probeSlots = 4

// RelearnWindow is how long learning stays open after signalling when the
// source proven before keeps sending from an address other than the SDP
// one (a phone behind NAT): long enough for a phone that moved to prove
// its new address, short enough that a session refresh does not leave the
// call open to takeover (Asterisk's learning timeout is 5 s as well).
const RelearnWindow = 5 * time.Second

// SendGrace is how long a session sends to the address from signalling
// before any packet proved the far end is there: enough for a phone that
// waits for our first packet (or a slow NAT) to start, too short to make
// the bridge a reflector that floods a third party named in a forged SDP
// (issue 10). It runs from the first packet sent, once per session; after
// it, nothing is sent (Stats.Unsent counts) until a source is proven.
const SendGrace = 4 * time.Second

// Handler receives the packets a Session polls. The payload aliases the
// session's read buffer and is valid only during the call.
type Handler interface {
	// Audio is called for a packet of the negotiated audio codec (and,
	// in a G.711 session, of either G.711 law), never with an empty
	// payload.
	Audio(ssrc, timestamp uint32, codec Codec, payload []byte)
	// Event is called for an RFC 4733 telephone-event packet.
	Event(ssrc, timestamp uint32, payload []byte)
}

// SessionStats counts a session's traffic. All counters only grow.
type SessionStats struct {
	PacketsIn  uint64
	PacketsOut uint64
	Malformed  uint64 // too short, not version 2, bad padding
	Strangers  uint64 // from an address other than the proven source
	Unproven   uint64 // dropped while no source was proven (in probation)
	UnknownPT  uint64 // payload types we did not negotiate
	SendErrors uint64
	Unsent     uint64 // packets not sent: no source proven within SendGrace
	// AuthFailures are SRTP packets dropped unplayed: failed
	// authentication, a replay, too short (RFC 3711 §3.3).
	AuthFailures uint64
}

// Direction is an SDP media direction (RFC 4566 §6, RFC 3264 §5.1) seen
// from this side.
type Direction uint8

// Directions.
const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

// Sends reports whether this side sends media in direction d.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether this side expects media in direction d.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

// String returns the SDP attribute name.
func (d Direction) String() string {
	switch d {
	case SendOnly:
		return "sendonly"
	case RecvOnly:
		return "recvonly"
	case Inactive:
		return "inactive"
	}
	return "sendrecv"
}

// Params are the negotiated properties of a session that signalling may
// change during a call (RFC 3264 offer/answer, re-INVITE).
type Params struct {
	Remote netip.AddrPort // from the SDP c= and m= lines
	Codec  Codec          // what we send and expect
	// PayloadType is the negotiated payload type of Codec, the one we send
	// with and take audio on. Static codecs always use their own (it may
	// be left 0); Opus uses the number the offer gave it.
	PayloadType      uint8
	TelephoneEventPT uint8     // 0: none negotiated; at Codec's RTP clock rate
	Direction        Direction // our direction
	// Opus holds what the peer's fmtp asked of our Opus encoder
	// (maxplaybackrate, useinbandfec, stereo, ptime); ignored for other
	// codecs.
	Opus opus.Fmtp
}

// Session is the RTP session of one call on its own UDP socket (RFC 3550).
//
// Reading is non-blocking and done by whoever drives the call's media (the
// conference mixer, once per tick) through Poll, so no goroutine wakes per
// packet. Sending uses one SSRC with sequence numbers and timestamps per
// RFC 3550 §5.1.
//
// # Strict source
//
// The session plays packets from one proven source address only (strict
// RTP, as Asterisk's strictrtp with probation). The source is learned:
//   - at once from a packet from the SDP address (Params.Remote): signalling
//     named it, and an off-path stranger cannot send from it. It also wins
//     over a source learned by probation, so a stranger who won the set-up
//     race loses the call to the phone's first packet;
//   - otherwise by probation: Probation packets with consecutive sequence
//     numbers from one address (a phone behind NAT sends from a public
//     address its SDP does not name; symmetric RTP, RFC 4961).
//
// Until a source is proven, packets are dropped (Stats.Unproven). After,
// packets from any other address are dropped (Stats.Strangers), however
// long the source is silent: a muted phone keeps its call. A new source is
// learned only after signalling: SetParams opens learning again, the
// current source is still played meanwhile (a session refresh drops no
// audio), and learning closes when a new source proves itself, when the
// current source sends from the SDP address, or when it has kept sending
// for RelearnWindow.
//
// We send to the proven source, else to the SDP address for SendGrace at
// most (see there).
//
// Poll and the Write methods are for one goroutine; SetParams, Stats,
// Proven and Close may be called from any.
type Session struct {
	local   netip.AddrPort
	onClose func()
	now     func() time.Time // for SetParams, and sends before any Poll

	mu    sync.Mutex    // guards params, source learning and the send state
	codec atomic.Uint32 // params.Codec, for Codec; beside mu, which the mixer takes next
	// gen counts SetParams calls, so that an endpoint notices a
	// re-INVITE (a new codec or fmtp) between two ticks with one load.
	gen    atomic.Uint32
	params Params
	// audioPT is the payload type audio of a stateful codec (G.722,
	// Opus) must come with; wide says the codec is one of those.
	audioPT uint8
	wide    bool
	closed  bool
	srtp    *SRTP // nil: plain RTP (see SetSRTP)

	// source learning (under mu)
	src        netip.AddrPort // the proven source, if valid
	learning   bool           // a new source may be learned (start, and after SetParams)
	learnSince int64          // unix nanos of the first packet seen while learning; 0: none yet
	cands      [probeSlots]candidate
	candClock  uint32 // orders candidates by their last packet, to evict the stalest
	lastPoll   int64  // unix nanos of the last Poll: the clock of the send grace

	provenAt  atomic.Int64 // unix nanos the current source was proven; 0: none
	heldSince atomic.Int64 // unix nanos the direction left sendrecv; 0: sendrecv

	// fd is the socket's descriptor, used directly for recvmmsg and
	// sendto. It is only used under mu with closed false, and Close marks
	// closed under mu before the socket is closed, so it never names a
	// closed or reused descriptor.
	fd    uintptr
	inet6 bool // an AF_INET6 socket: IPv4 peers go as v4-mapped addresses

	// send state
	hdr       rtp.Header
	started   bool
	firstSend int64 // unix nanos of the first packet sent before a source was proven
	wbuf      [maxSend]byte
	wbig      *[maxWideSend]byte // made for Opus by SetParams (a pointer: 8 bytes in a G.711 session)
	wsa       syscall.RawSockaddrAny

	// receive state (poll goroutine)
	rx      *rxBatch // for Poll; the mixer passes its own to PollInto
	pkt     rtp.Packet
	lastRTP atomic.Int64 // unix nanos of the last valid packet

	packetsIn, packetsOut, malformed, strangers, unproven, unknownPT, sendErrors, unsent atomic.Uint64
	authFailures                                                                         atomic.Uint64
}

// candidate is an address in probation: its last sequence number and how
// many consecutive ones it has sent.
type candidate struct {
	addr  netip.AddrPort
	seq   uint16
	run   uint8
	stamp uint32 // candClock at its last packet
}

// NewSession takes over a bound UDP socket: it keeps a close-on-exec
// duplicate of the descriptor, outside Go's network poller, and closes conn.
// onClose, if not nil, runs once when the session closes (to release the
// port).
func NewSession(conn *net.UDPConn, onClose func()) (*Session, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &Session{onClose: onClose, now: time.Now, learning: true}
	s.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	var sa syscall.Sockaddr
	var dupErr error
	cerr := raw.Control(func(fd uintptr) {
		s.fd, dupErr = dupCloexec(fd)
		sa, err = syscall.Getsockname(int(fd))
	})
	if cerr != nil || err != nil || dupErr != nil {
		if dupErr == nil {
			_ = syscall.Close(int(s.fd))
		}
		return nil, fmt.Errorf("media: socket: %w", errors.Join(cerr, err, dupErr))
	}
	// Keep only the duplicate, which Go's network poller does not watch:
	// the mixer polls the socket itself, and a socket in the poller would
	// wake an idle runtime thread for every packet that arrives (measured:
	// 1.4-1.7x the CPU of a whole room). Closing conn deregisters it; the
	// socket lives on through the duplicate.
	_ = conn.Close()
	_, s.inet6 = sa.(*syscall.SockaddrInet6)
	var b [10]byte
	_, _ = rand.Read(b[:])
	s.hdr = rtp.Header{
		Version:        2,
		SSRC:           binary.BigEndian.Uint32(b[0:4]),
		SequenceNumber: binary.BigEndian.Uint16(b[4:6]),
		Timestamp:      binary.BigEndian.Uint32(b[6:10]),
	}
	s.lastRTP.Store(time.Now().UnixNano())
	return s, nil
}

// LocalAddr returns the address the socket is bound to.
func (s *Session) LocalAddr() netip.AddrPort { return s.local }

// SSRC returns the synchronization source this session sends with.
func (s *Session) SSRC() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hdr.SSRC
}

// SetClock replaces the clock (time.Now) that stamps a hold's start in
// SetParams and times the send grace before the first Poll. Tests that
// step time call it before the session is used.
func (s *Session) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetParams applies a new offer/answer outcome (RFC 3264: the answer to an
// INVITE, a re-INVITE or an UPDATE with SDP). It opens source learning
// again: a phone that moved, or whose NAT rebound, can now prove its new
// address, while its current one is still played (see Session).
func (s *Session) SetParams(p Params) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.params = p
	s.audioPT = p.PayloadType
	if s.audioPT == 0 {
		s.audioPT = p.Codec.PayloadType()
	}
	s.wide = p.Codec == G722 || p.Codec == Opus
	if p.Codec == Opus && s.wbig == nil {
		s.wbig = new([maxWideSend]byte)
	}
	s.codec.Store(uint32(p.Codec))
	s.gen.Add(1)
	s.learning = true
	s.learnSince = 0
	s.cands = [probeSlots]candidate{}
	switch {
	case p.Direction == SendRecv && s.heldSince.Load() != 0:
		// Off hold: silence counts from now, not from the last packet
		// before a hold in which the phone may rightly have sent nothing.
		s.heldSince.Store(0)
		s.lastRTP.Store(max(s.lastRTP.Load(), s.now().UnixNano()))
	case p.Direction != SendRecv && s.heldSince.Load() == 0:
		s.heldSince.Store(s.now().UnixNano())
	}
}

// Codec returns the codec we send, without taking the session's lock (the
// mixer asks once per member per tick).
func (s *Session) Codec() Codec { return Codec(s.codec.Load()) }

// Generation returns how many times SetParams was called, without taking
// the session's lock: an endpoint compares it once a tick to pick up a
// re-INVITE's new codec or fmtp.
func (s *Session) Generation() uint32 { return s.gen.Load() }

// Params returns the current parameters.
func (s *Session) Params() Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.params
}

// RemoteAddr returns where packets are sent: the proven source, else the
// address from signalling.
func (s *Session) RemoteAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src.IsValid() {
		return s.src
	}
	return s.params.Remote
}

// Proven reports whether a source address has been proven (see Session).
// It takes no lock: the mixer asks for every member.
func (s *Session) Proven() bool { return s.provenAt.Load() != 0 }

// ProvenAt returns when the current source was proven (by the clock given
// to Poll), or the zero time if none is.
func (s *Session) ProvenAt() time.Time {
	if ns := s.provenAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// HeldSince returns when the negotiated direction stopped being sendrecv
// (a hold by either side: sendonly, recvonly, inactive or c=0.0.0.0) and
// true, or false while it is sendrecv. A change between two held
// directions does not restart it. It takes no lock.
func (s *Session) HeldSince() (time.Time, bool) {
	if ns := s.heldSince.Load(); ns != 0 {
		return time.Unix(0, ns), true
	}
	return time.Time{}, false
}

// LastReceived returns when the last packet from the proven source
// arrived, or when the session was created or came off hold if that is
// later: the time from which silence counts. Packets in probation and
// strangers' do not count, so they cannot keep a call alive.
func (s *Session) LastReceived() time.Time { return time.Unix(0, s.lastRTP.Load()) }

// Stats returns the counters.
func (s *Session) Stats() SessionStats {
	return SessionStats{
		PacketsIn:    s.packetsIn.Load(),
		PacketsOut:   s.packetsOut.Load(),
		Malformed:    s.malformed.Load(),
		Strangers:    s.strangers.Load(),
		Unproven:     s.unproven.Load(),
		UnknownPT:    s.unknownPT.Load(),
		SendErrors:   s.sendErrors.Load(),
		Unsent:       s.unsent.Load(),
		AuthFailures: s.authFailures.Load(),
	}
}

// Flush discards everything queued on the socket (audio that arrived while
// nobody was polling would otherwise be played late).
func (s *Session) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	var d drainBatch
	d.init()
	for range 1024 {
		if n, errno := d.recv(s.fd); errno != 0 || n < recvBatch {
			return
		}
	}
}

// Poll reads every datagram queued on the socket (up to a bound) without
// blocking and hands the valid ones to h. now is the poll time. It returns
// the number of datagrams read.
func (s *Session) Poll(now time.Time, h Handler) int {
	if s.rx == nil {
		s.rx = &rxBatch{}
		s.rx.init()
	}
	return s.poll(now, h, s.rx)
}

// RecvBuffer is the memory a receive needs (a few datagrams and their
// source addresses). One goroutine polling many sessions shares one, so
// that sessions hold no receive memory of their own.
type RecvBuffer struct{ b rxBatch }

// NewRecvBuffer returns a buffer for PollInto.
func NewRecvBuffer() *RecvBuffer {
	r := &RecvBuffer{}
	r.b.init()
	return r
}

// PollInto is Poll reading into buf, which the caller owns and must not
// use from two goroutines at once. The payloads handed to h alias buf.
func (s *Session) PollInto(now time.Time, h Handler, buf *RecvBuffer) int {
	return s.poll(now, h, &buf.b)
}

func (s *Session) poll(now time.Time, h Handler, rx *rxBatch) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	nowNs := now.UnixNano()
	s.lastPoll = nowNs
	count := 0
	for count < maxPerPoll {
		n, errno := rx.recv(s.fd)
		if errno != 0 {
			break
		}
		for i := range n {
			count++
			from, ok := sockaddrToAddrPort(&rx.names[i])
			if !ok {
				s.malformed.Add(1)
				continue
			}
			s.handle(nowNs, from, rx.bufs[i][:min(int(rx.msgs[i].n), maxPacket)], h)
		}
		if n < recvBatch {
			break // drained: no need for a call that returns EAGAIN
		}
	}
	return count
}

func (s *Session) handle(nowNs int64, from netip.AddrPort, b []byte, h Handler) {
	if len(b) < 12 || b[0]>>6 != 2 {
		s.malformed.Add(1)
		return
	}
	if pt := b[1] & 0x7f; pt >= 72 && pt <= 76 {
		return // RTCP multiplexed on the RTP port (RFC 5761 §4): not audio
	}
	if s.srtp != nil {
		// Before anything trusts the packet: an unauthenticated one
		// neither latches the source nor is played (RFC 3711 §3.3).
		var err error
		if b, err = s.srtp.Unprotect(b); err != nil {
			s.authFailures.Add(1)
			return
		}
	}
	if err := s.pkt.Unmarshal(b); err != nil {
		s.malformed.Add(1)
		return
	}
	if from != s.src || s.learning {
		// The fast path is one comparison: a packet from the proven source
		// while learning is closed.
		if !s.learn(nowNs, from, s.pkt.SequenceNumber) {
			return
		}
	}
	s.lastRTP.Store(nowNs)
	s.packetsIn.Add(1)
	if !s.params.Direction.Receives() {
		return // on hold: the peer should not send, and we do not listen
	}
	pt := s.pkt.PayloadType
	if s.wide {
		// G.722 or Opus: only the negotiated payload type is audio (an
		// Opus one is dynamic, RFC 7587 §7), and it reaches the codec's
		// stateful decoder.
		if pt == s.audioPT {
			if len(s.pkt.Payload) > 0 {
				h.Audio(s.pkt.SSRC, s.pkt.Timestamp, s.params.Codec, s.pkt.Payload)
			}
			return
		}
	} else if codec, ok := CodecByPayloadType(pt); ok && codec.Stateless() {
		// G.711: either law is played, as a peer that answered with both
		// may send either (RFC 3264 §6.1), and decoding it costs nothing.
		if len(s.pkt.Payload) > 0 {
			h.Audio(s.pkt.SSRC, s.pkt.Timestamp, codec, s.pkt.Payload)
		}
		return
	}
	if pt == s.params.TelephoneEventPT && pt != 0 {
		h.Event(s.pkt.SSRC, s.pkt.Timestamp, s.pkt.Payload)
		return
	}
	s.unknownPT.Add(1)
}

// learn runs strict source learning for a packet that is not simply from
// the proven source (see Session) and reports whether to play it.
func (s *Session) learn(nowNs int64, from netip.AddrPort, seq uint16) bool {
	if from == s.params.Remote {
		// The SDP address: signalling named it. It is learned at once and
		// takes over from a source learned by probation.
		if from != s.src {
			s.prove(nowNs, from)
		}
		s.learning = false
		return true
	}
	if !s.learning {
		s.strangers.Add(1)
		return false
	}
	if s.learnSince == 0 {
		s.learnSince = nowNs
	}
	if from == s.src {
		// Still the proven source: played. Learning ends once it has kept
		// sending for the window without another proving itself.
		if nowNs-s.learnSince >= int64(RelearnWindow) {
			s.learning = false
		}
		return true
	}
	if s.probe(from, seq) {
		s.prove(nowNs, from)
		s.learning = false
		return true
	}
	if s.src.IsValid() {
		s.strangers.Add(1)
	} else {
		s.unproven.Add(1)
	}
	return false
}

// probe counts a packet of from towards its probation and reports whether
// from has now sent Probation packets with consecutive sequence numbers.
func (s *Session) probe(from netip.AddrPort, seq uint16) bool {
	s.candClock++
	victim := 0
	for i := range s.cands {
		c := &s.cands[i]
		if c.addr == from {
			if c.run > 0 && seq == c.seq+1 {
				c.run++
			} else {
				c.run = 1
			}
			c.seq, c.stamp = seq, s.candClock
			return c.run >= Probation
		}
		// Evict the shortest run, the stalest among equals: a stranger
		// spraying from many addresses replaces its own one-packet runs,
		// not a phone's run in progress.
		v := &s.cands[victim]
		if c.run < v.run || (c.run == v.run && c.stamp < v.stamp) {
			victim = i
		}
	}
	s.cands[victim] = candidate{addr: from, seq: seq, run: 1, stamp: s.candClock}
	return Probation <= 1
}

// prove makes from the session's source.
func (s *Session) prove(nowNs int64, from netip.AddrPort) {
	s.src = from
	s.cands = [probeSlots]candidate{}
	if nowNs == 0 {
		nowNs = 1 // 0 means "not proven"
	}
	s.provenAt.Store(nowNs)
}

// WriteAudio sends one packet of audio already encoded in the session's
// codec, with the negotiated payload type, and advances the timestamp by
// the packet's duration at the codec's RTP clock: a byte per tick for
// G.711 and G.722 (whose RTP clock counts code words, RFC 3551 §4.5.2:
// 160 per 20 ms), the samples its TOC byte says at 48 kHz for Opus
// (RFC 7587 §4.1: 960 per 20 ms). It does nothing (and reports no error)
// when the negotiated direction says we do not send.
func (s *Session) WriteAudio(payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeAudioLocked(payload)
}

// writeAudio is WriteAudio of a payload encoded in codec: it is dropped
// if a re-INVITE changed the session's codec since it was encoded.
func (s *Session) writeAudio(codec Codec, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if codec != s.params.Codec {
		return nil
	}
	return s.writeAudioLocked(payload)
}

func (s *Session) writeAudioLocked(payload []byte) error {
	advance := uint32(len(payload))
	if s.params.Codec == Opus {
		n, err := opus.PacketSamples(payload)
		if err != nil {
			return fmt.Errorf("media: send Opus: %w", err)
		}
		advance = uint32(n)
	}
	pt := s.audioPT
	if !s.wide {
		pt = s.params.Codec.PayloadType()
	}
	return s.write(pt, !s.started, payload, advance)
}

// WriteEvent sends one RFC 4733 telephone-event packet. All packets of an
// event share the event's start timestamp; advance is how many samples the
// timestamp moves after this packet (the whole event's duration on its
// final packet, else 0). marker flags the first packet of the event.
func (s *Session) WriteEvent(payload []byte, marker bool, advance uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.params.TelephoneEventPT == 0 {
		return nil
	}
	return s.write(s.params.TelephoneEventPT, marker, payload, advance)
}

func (s *Session) write(pt uint8, marker bool, payload []byte, advance uint32) error {
	if s.closed {
		return ErrClosed
	}
	if !s.params.Direction.Sends() {
		s.hdr.Timestamp += advance // keep the clock running while on hold
		return nil
	}
	dst := s.src
	if !dst.IsValid() {
		// Nothing proved the far end is at the SDP address: send there for
		// the grace only, so a forged SDP cannot aim us at a third party.
		dst = s.params.Remote
		if !dst.IsValid() {
			return ErrNoRemote
		}
		now := s.lastPoll
		if now == 0 {
			now = s.now().UnixNano()
		}
		if s.firstSend == 0 {
			s.firstSend = now
		} else if now-s.firstSend > int64(SendGrace) {
			s.hdr.Timestamp += advance
			s.unsent.Add(1)
			return ErrUnproven
		}
	}
	buf := s.wbuf[:]
	if 12+len(payload) > len(buf) {
		if s.wbig == nil || 12+len(payload) > maxWideSend {
			return fmt.Errorf("media: send: payload of %d bytes: %w", len(payload), ErrTooLarge)
		}
		buf = s.wbig[:]
	}
	s.hdr.PayloadType = pt
	s.hdr.Marker = marker
	n, err := s.hdr.MarshalTo(buf)
	if err != nil {
		return err
	}
	n += copy(buf[n:], payload)
	out := buf[:n]
	if s.srtp != nil {
		if out, err = s.srtp.Protect(out); err != nil {
			return err
		}
	}
	s.hdr.SequenceNumber++
	s.hdr.Timestamp += advance
	s.started = true
	if s.inet6 && dst.Addr().Is4() {
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	}
	saLen := sockaddrFrom(dst, &s.wsa)
	if errno := sendto(s.fd, out, &s.wsa, saLen); errno != 0 {
		s.sendErrors.Add(1)
		return fmt.Errorf("media: send to %s: %w", dst, errno)
	}
	s.packetsOut.Add(1)
	return nil
}

// Close closes the socket. It is safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := syscall.Close(int(s.fd))
	if s.onClose != nil {
		s.onClose()
	}
	return err
}

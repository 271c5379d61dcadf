package bridge

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"chorus/media"
	"chorus/media/g722"
	"chorus/media/opus"
)

// fakeLeg is a call's signalling reduced to what the bridge uses; the
// media session under it is real.
type fakeLeg struct {
	sess   *media.Session
	hungUp atomic.Int32
}

func (l *fakeLeg) Media() *media.Session { return l.sess }
func (l *fakeLeg) Hangup(context.Context, string) error {
	l.hungUp.Add(1)
	return nil
}

// peer is a caller's phone: a real UDP socket sending RTP to its member's
// session and recording what comes back.
type peer struct {
	t      testing.TB
	conn   *net.UDPConn
	leg    *fakeLeg
	call   *Call
	member *Member
	codec  media.Codec
	remote netip.AddrPort
	hdr    rtp.Header
	source func(dst []int16) // at the codec's audio rate
	frame  []int16
	buf    [1500]byte
	out    [opus.MaxPacketBytes]byte // what send encodes
	// the phone's own G.722 or Opus coder (rec is at the codec's rate)
	g722Enc *g722.Encoder
	g722Dec *g722.Decoder
	opusEnc *opus.Encoder
	opusDec *opus.Decoder
	rec     []int16
	pkt     rtp.Packet
	events  int
}

// room is a conference stepped by hand, with its callers.
type room struct {
	t     testing.TB
	b     *Bridge
	conf  *Conference
	peers []*peer
	now   time.Time
}

func newRoom(t testing.TB, cfg Config) *room {
	t.Helper()
	b := New(cfg, nil, nil)
	b.manualClock = true
	conf, err := b.CreateConference(ConferenceOptions{UserID: "u-test", From: "+15550001000"})
	if err != nil {
		t.Fatal(err)
	}
	return &room{t: t, b: b, conf: conf, now: time.Now()}
}

// join adds a caller using codec that sends source (nil: silence).
func (r *room) join(codec media.Codec, source func([]int16)) *peer {
	r.t.Helper()
	return r.joinWith(codec, source, MemberOptions{})
}

// joinWith adds a caller as join does, with opts (DialIn: as SIP routing
// adds a dial-in).
func (r *room) joinWith(codec media.Codec, source func([]int16), opts MemberOptions) *peer {
	r.t.Helper()
	p := r.newPeer(codec, source)
	p.call = r.b.NewCall("u-test", "caller", "1000", DirectionIn, p.leg, Callback{})
	p.call.Answered()
	m, err := r.conf.AddMember(p.call, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	p.member = m
	r.peers = append(r.peers, p)
	return p
}

// newPeer makes a phone socket and its call's media session, sending to
// each other.
func (r *room) newPeer(codec media.Codec, source func([]int16)) *peer {
	r.t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.t.Fatal(err)
	}
	bconn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.t.Fatal(err)
	}
	sess, err := media.NewSession(bconn, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	phoneAddr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	sess.SetParams(media.Params{Remote: phoneAddr, Codec: codec, TelephoneEventPT: 101, Direction: media.SendRecv})
	p := &peer{t: r.t, conn: conn, leg: &fakeLeg{sess: sess}, codec: codec, remote: sess.LocalAddr(), source: source}
	p.frame = make([]int16, codec.AudioRate()/50)
	switch codec {
	case media.G722:
		p.g722Enc, p.g722Dec = g722.NewEncoder(), g722.NewDecoder()
	case media.Opus:
		if p.opusEnc, err = opus.NewEncoder(opus.DefaultConfig()); err != nil {
			r.t.Fatal(err)
		}
		if p.opusDec, err = opus.NewDecoder(); err != nil {
			r.t.Fatal(err)
		}
	}
	p.hdr = rtp.Header{Version: 2, PayloadType: codec.PayloadType(), SSRC: uint32(len(r.peers) + 1000), Timestamp: 5000, SequenceNumber: 100}
	r.t.Cleanup(func() {
		_ = conn.Close()
		_ = sess.Close()
	})
	return p
}

// send transmits one 20 ms frame of the peer's source.
func (p *peer) send() {
	if p.source != nil {
		p.source(p.frame[:])
	} else {
		clear(p.frame[:])
	}
	payload := p.out[:]
	var n int
	switch {
	case p.g722Enc != nil:
		n = p.g722Enc.Encode(payload[:], p.frame)
	case p.opusEnc != nil:
		var err error
		if n, err = p.opusEnc.Encode(payload[:], p.frame); err != nil {
			p.t.Fatal(err)
		}
	default:
		n = p.codec.Encode(payload[:], p.frame)
	}
	p.sendPayload(p.codec.PayloadType(), payload[:n], uint32(p.codec.RTPClockRate()/50))
}

func (p *peer) sendPayload(pt uint8, payload []byte, advance uint32) {
	p.hdr.PayloadType = pt
	n, err := p.hdr.MarshalTo(p.buf[:])
	if err != nil {
		p.t.Fatal(err)
	}
	n += copy(p.buf[n:], payload)
	if _, err := p.conn.WriteToUDPAddrPort(p.buf[:n], p.remote); err != nil {
		p.t.Fatal(err)
	}
	p.hdr.SequenceNumber++
	p.hdr.Timestamp += advance
}

// receive reads every packet waiting and records its audio.
func (p *peer) receive() {
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		n, _, err := p.conn.ReadFromUDPAddrPort(p.buf[:])
		if err != nil {
			return
		}
		if err := p.pkt.Unmarshal(p.buf[:n]); err != nil {
			p.t.Errorf("bridge sent a bad RTP packet: %v", err)
			return
		}
		if p.pkt.PayloadType == 101 {
			p.events++
			continue
		}
		var pcm [opus.MaxFrameSamples]int16
		var k int
		switch {
		case p.g722Dec != nil:
			k = p.g722Dec.Decode(pcm[:], p.pkt.Payload)
		case p.opusDec != nil:
			var err error
			if k, err = p.opusDec.Decode(pcm[:], p.pkt.Payload); err != nil {
				p.t.Errorf("bridge sent a bad Opus packet: %v", err)
				return
			}
		default:
			codec, ok := media.CodecByPayloadType(p.pkt.PayloadType)
			if !ok {
				p.events++
				continue
			}
			k = codec.Decode(pcm[:], p.pkt.Payload)
		}
		p.rec = append(p.rec, pcm[:k]...)
	}
}

// step runs n ticks: every caller sends a frame, the mixer mixes, every
// caller receives.
func (r *room) step(n int) {
	for range n {
		for _, p := range r.peers {
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
		for _, p := range r.peers {
			p.receive()
		}
	}
}

// mark returns where each peer's recording is now.
func (r *room) mark() []int {
	out := make([]int, len(r.peers))
	for i, p := range r.peers {
		out[i] = len(p.rec)
	}
	return out
}

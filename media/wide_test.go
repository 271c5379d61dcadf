package media

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media/g722"
	"chorus/media/opus"
)

// widePhone is a G.722 or Opus phone on a loopback socket: it encodes a
// tone with the codec's own package and sends it as RTP, ptime ms a packet.
type widePhone struct {
	t     testing.TB
	conn  *net.UDPConn
	to    netip.AddrPort
	codec Codec
	pt    uint8
	seq   uint16
	ts    uint32
	ptime int // ms per packet
	g     *g722.Encoder
	o     *opus.Encoder
	src   func([]int16) // the audio, at the codec's rate
	pcm   []int16
	buf   [opus.MaxPacketBytes]byte
	sent  int // ms of audio sent
}

func newWidePhone(t testing.TB, codec Codec, pt uint8, ptime int, cfg opus.Config, src func([]int16)) *widePhone {
	t.Helper()
	p := &widePhone{t: t, conn: listenLoopback(t), codec: codec, pt: pt, ptime: ptime, src: src, ts: 5000, seq: 100}
	p.pcm = make([]int16, codec.AudioRate()*ptime/1000)
	switch codec {
	case G722:
		p.g = g722.NewEncoder()
	case Opus:
		enc, err := opus.NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.o = enc
	}
	return p
}

// next encodes the next packet's audio and returns its payload and
// timestamp, advancing the phone's clock.
func (p *widePhone) next() ([]byte, uint32, uint16) {
	p.src(p.pcm)
	var n int
	if p.codec.Stateless() {
		n = p.codec.Encode(p.buf[:], p.pcm)
	} else if p.g != nil {
		n = p.g.Encode(p.buf[:], p.pcm)
	} else {
		var err error
		if n, err = p.o.Encode(p.buf[:], p.pcm); err != nil {
			p.t.Fatal(err)
		}
	}
	ts, seq := p.ts, p.seq
	p.ts += uint32(p.codec.RTPClockRate() * p.ptime / 1000)
	p.seq++
	p.sent += p.ptime
	return p.buf[:n], ts, seq
}

// wideRun drives an endpoint tick by tick as a mixer would: the phone
// sends what falls due in the tick (unless drop says otherwise for that
// packet), Receive takes it in, Pull gives the frame at the room's rate.
// It returns everything pulled.
func wideRun(t testing.TB, ep Endpoint, p *widePhone, rate, ticks int, drop func(k int, payload []byte) bool) []int16 {
	t.Helper()
	rx := NewRecvBuffer()
	frame := make([]int16, rate/50)
	var out []int16
	k := 0
	for tick := range ticks {
		want := 0
		for p.sent < (tick+1)*20 {
			payload, ts, seq := p.next()
			if drop == nil || !drop(k, payload) {
				send(t, p.conn, ep.Session().LocalAddr(), rtpPacket(t, p.pt, seq, ts, 77, payload))
				want++
			}
			k++
		}
		deadline := time.Now().Add(2 * time.Second)
		for got := 0; got < want; {
			got += ep.Receive(time.Now(), rx)
			if time.Now().After(deadline) {
				t.Fatalf("tick %d: received %d of %d packets", tick, got, want)
			}
		}
		ep.Pull(frame)
		out = append(out, frame...)
	}
	return out
}

// newWideEndpoint is an endpoint of codec (negotiated payload type pt) in
// a room mixed at rate, talking to phone.
func newWideEndpoint(t testing.TB, phone *net.UDPConn, codec Codec, pt uint8, rate int) Endpoint {
	t.Helper()
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: codec, PayloadType: pt, TelephoneEventPT: 101, Direction: SendRecv})
	ep := NewEndpoint(sess)
	if err := ep.SetRate(rate); err != nil {
		t.Fatal(err)
	}
	return ep
}

// TestEndpointWideLevels: a G.722 and an Opus RTP stream, encoded by
// media/g722 and media/opus and sent over loopback, come out of an
// endpoint at every room rate carrying their 1 kHz tone at its level
// ±1 dB; Opus with 10, 20, 40 and 60 ms packets alike.
func TestEndpointWideLevels(t *testing.T) {
	type tc struct {
		codec Codec
		pt    uint8
		ptime int
	}
	cases := []tc{{G722, PayloadTypeG722, 20}, {Opus, 96, 20}, {Opus, 111, 10}, {Opus, 111, 40}, {Opus, 111, 60}}
	for _, c := range cases {
		for _, rate := range []int{8000, 16000, 48000} {
			t.Run(fmt.Sprintf("%s/%dms/%d", c.codec, c.ptime, rate), func(t *testing.T) {
				p := newWidePhone(t, c.codec, c.pt, c.ptime, opus.DefaultConfig(), audiotest.ToneSource(1000, -20, c.codec.AudioRate()))
				ep := newWideEndpoint(t, p.conn, c.codec, c.pt, rate)
				out := wideRun(t, ep, p, rate, 40, nil)
				got := audiotest.LevelDBFS(out[10*rate/50:], 1000, rate)
				if math.Abs(got+20) > 1 {
					t.Errorf("the tone comes out at %.2f dBFS, want -20 ± 1", got)
				}
				if want := c.codec.AudioRate(); c.codec == G722 && ep.MaxRate() != want {
					t.Errorf("MaxRate %d, want %d", ep.MaxRate(), want)
				}
				if s := ep.Session().Stats(); s.UnknownPT != 0 {
					t.Errorf("%d packets of the negotiated payload type were refused", s.UnknownPT)
				}
			})
		}
	}
}

// TestEndpointOpusLoss: an Opus stream with every 5th packet dropped is
// repaired (in-band FEC from the next packet, PLC when that is not there
// yet): no lost frame is a hole, and the level stays within what libopus
// itself gives on this loss (a pure tone is Opus' worst case: the frame
// after a loss comes back some 10 dB low while CELT's band energies
// re-converge, with FEC as with PLC; the decoder alone does the same).
func TestEndpointOpusLoss(t *testing.T) {
	const rate = 48000
	p := newWidePhone(t, Opus, 111, 20, opus.DefaultConfig(), audiotest.ToneSource(440, -20, rate))
	ep := newWideEndpoint(t, p.conn, Opus, 111, rate)
	out := wideRun(t, ep, p, rate, 100, func(k int, _ []byte) bool { return k > 10 && k%5 == 0 })
	out = out[20*rate/50:]
	if got := audiotest.LevelDBFS(out, 440, rate); math.Abs(got+20) > 4.5 {
		t.Errorf("with every 5th packet lost the tone is at %.2f dBFS, want -20 within 4.5 dB", got)
	}
	n := rate / 50
	for f := 0; f+n <= len(out); f += n {
		if got := audiotest.LevelDBFS(out[f:f+n], 440, rate); got < -60 {
			t.Fatalf("frame %d: the tone drops out (%.1f dBFS)", f/n, got)
		}
	}
	js := ep.JitterStats()
	if lost := 100 / 5; js.Recovered < uint64((lost-4)*n) {
		t.Errorf("%d samples recovered by FEC, want most of %d lost frames", js.Recovered, lost)
	}
}

// TestEndpointOpusDTX: an Opus phone with DTX goes quiet in a pause (its
// 1–2 byte DTX packets, or none, RFC 7587 §3.1.3) and is heard at its
// level again when it speaks.
func TestEndpointOpusDTX(t *testing.T) {
	const rate = 16000
	cfg := opus.DefaultConfig()
	cfg.DTX = true
	tone := audiotest.ToneSource(600, -20, 48000)
	tick := 0
	src := func(dst []int16) {
		if tick++; tick > 50 && tick <= 100 {
			clear(dst) // a pause of a second
			return
		}
		tone(dst)
	}
	p := newWidePhone(t, Opus, 111, 20, cfg, src)
	ep := newWideEndpoint(t, p.conn, Opus, 111, rate)
	dtx := 0
	out := wideRun(t, ep, p, rate, 150, func(k int, payload []byte) bool {
		if opus.IsDTX(payload) {
			dtx++
			return dtx%10 != 1 // most DTX frames are not sent, every 10th is
		}
		return false
	})
	if dtx == 0 {
		t.Fatal("the encoder made no DTX frames in the pause")
	}
	n := rate / 50
	if got := audiotest.LevelDBFS(out[10*n:50*n], 600, rate); math.Abs(got+20) > 1 {
		t.Errorf("before the pause: %.2f dBFS, want -20 ± 1", got)
	}
	if got := audiotest.RMSDBFS(out[70*n : 95*n]); got > -50 {
		t.Errorf("in the pause: %.1f dBFS, want quiet", got)
	}
	if got := audiotest.LevelDBFS(out[115*n:], 600, rate); math.Abs(got+20) > 1 {
		t.Errorf("after the pause: %.2f dBFS, want -20 ± 1", got)
	}
}

// TestEndpointWidePush: Push sends G.722 and Opus frames at the codec's
// RTP clock (160 and 960 a frame), with the negotiated payload type, and
// they decode to what was pushed.
func TestEndpointWidePush(t *testing.T) {
	for _, c := range []struct {
		codec Codec
		pt    uint8
		step  uint32
	}{{G722, PayloadTypeG722, 160}, {Opus, 98, 960}} {
		t.Run(c.codec.String(), func(t *testing.T) {
			const rate = 48000
			phone := listenLoopback(t)
			ep := newWideEndpoint(t, phone, c.codec, c.pt, rate)
			ep.Receive(time.Now(), NewRecvBuffer()) // takes up the parameters
			tone := audiotest.ToneSource(1000, -20, rate)
			frame := make([]int16, rate/50)
			var pcm []int16
			var dec16 *g722.Decoder
			var decO *opus.Decoder
			if c.codec == G722 {
				dec16 = g722.NewDecoder()
			} else {
				var err error
				if decO, err = opus.NewDecoder(); err != nil {
					t.Fatal(err)
				}
			}
			var lastTS uint32
			for k := range 30 {
				tone(frame)
				if err := ep.Push(frame); err != nil {
					t.Fatal(err)
				}
				pkt, _, ok := recvRTP(t, phone, 2*time.Second)
				if !ok {
					t.Fatal("nothing sent")
				}
				if pkt.PayloadType != c.pt {
					t.Fatalf("payload type %d, want %d", pkt.PayloadType, c.pt)
				}
				if k > 0 && pkt.Timestamp-lastTS != c.step {
					t.Fatalf("timestamp advanced by %d, want %d", pkt.Timestamp-lastTS, c.step)
				}
				lastTS = pkt.Timestamp
				out := make([]int16, opus.MaxFrameSamples)
				var n int
				if dec16 != nil {
					n = dec16.Decode(out, pkt.Payload)
				} else {
					var err error
					if n, err = decO.Decode(out, pkt.Payload); err != nil {
						t.Fatal(err)
					}
				}
				pcm = append(pcm, out[:n]...)
			}
			ar := c.codec.AudioRate()
			if got := audiotest.LevelDBFS(pcm[5*ar/50:], 1000, ar); math.Abs(got+20) > 1 {
				t.Errorf("the phone hears %.2f dBFS, want -20 ± 1", got)
			}
		})
	}
}

// TestEndpointWideNoAllocs: a tick of a G.722 and of an Opus endpoint
// (Receive, Pull, Push) allocates nothing once running.
func TestEndpointWideNoAllocs(t *testing.T) {
	for _, codec := range []Codec{G722, Opus} {
		t.Run(codec.String(), func(t *testing.T) {
			const rate = 48000
			p := newWidePhone(t, codec, codec.PayloadType(), 20, opus.DefaultConfig(), audiotest.ToneSource(700, -20, codec.AudioRate()))
			ep := newWideEndpoint(t, p.conn, codec, codec.PayloadType(), rate)
			wideRun(t, ep, p, rate, 10, nil)
			rx := NewRecvBuffer()
			frame := make([]int16, rate/50)
			pkts := make([][]byte, 0, 200)
			for range 200 {
				payload, ts, seq := p.next()
				pkts = append(pkts, rtpPacket(t, p.pt, seq, ts, 77, payload))
			}
			k := 0
			allocs := testing.AllocsPerRun(100, func() {
				send(t, p.conn, ep.Session().LocalAddr(), pkts[k])
				k++
				for ep.Receive(time.Now(), rx) == 0 {
				}
				ep.Pull(frame)
				_ = ep.Push(frame)
			})
			if allocs != 0 {
				t.Errorf("a tick allocates %.1f times", allocs)
			}
		})
	}
}

// TestEndpointCodecChange: a re-INVITE that changes the codec (SetParams
// from the signalling goroutine while the mixer's goroutine drives the
// endpoint) is followed from the next tick: G.711, then Opus, then
// G.722, then G.711 again, each heard at its level, with MaxRate and what
// Push sends following.
func TestEndpointCodecChange(t *testing.T) {
	const rate = 16000
	phone := listenLoopback(t)
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMU, Direction: SendRecv})
	ep := NewEndpoint(sess)
	if err := ep.SetRate(rate); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		codec Codec
		pt    uint8
		max   int
	}{{PCMU, PayloadTypePCMU, 8000}, {Opus, 107, 48000}, {G722, PayloadTypeG722, 16000}, {PCMA, PayloadTypePCMA, 8000}}
	for i, s := range steps {
		if i > 0 {
			done := make(chan struct{})
			go func() { // signalling's goroutine, while the endpoint is live
				defer close(done)
				sess.SetParams(Params{Remote: addrOf(phone), Codec: s.codec, PayloadType: s.pt, Direction: SendRecv})
			}()
			ep.Receive(time.Now(), NewRecvBuffer())
			<-done
		}
		p := newWidePhone(t, s.codec, s.pt, 20, opus.DefaultConfig(), audiotest.ToneSource(1000, -20, s.codec.AudioRate()))
		p.conn = phone
		p.ts += uint32(i) * 100000 // a new stream
		out := wideRun(t, ep, p, rate, 30, nil)
		if got := audiotest.LevelDBFS(out[10*rate/50:], 1000, rate); math.Abs(got+20) > 1 {
			t.Errorf("%s: the tone at %.2f dBFS, want -20 ± 1", s.codec, got)
		}
		if got := ep.MaxRate(); got != s.max {
			t.Errorf("%s: MaxRate %d, want %d", s.codec, got, s.max)
		}
		if err := ep.Push(make([]int16, rate/50)); err != nil {
			t.Fatal(err)
		}
		pkt, _, ok := recvRTP(t, phone, 2*time.Second)
		if !ok || pkt.PayloadType != s.pt {
			t.Fatalf("%s: Push sent %v, want payload type %d", s.codec, pkt, s.pt)
		}
	}
}

// BenchmarkEndpointWide is one tick of a G.722 or Opus call through its
// endpoint in a room at the codec's rate and at 8 kHz: a packet into the
// buffer, its decode (Pull), the encode of a frame and its send (Push).
// The receive system call is left out (BenchmarkMixTick counts it).
func BenchmarkEndpointWide(b *testing.B) {
	for _, codec := range []Codec{G722, Opus} {
		for _, rate := range []int{codec.AudioRate(), 8000} {
			b.Run(fmt.Sprintf("%s/rate=%d", codec, rate), func(b *testing.B) {
				p := newWidePhone(b, codec, codec.PayloadType(), 20, opus.DefaultConfig(), audiotest.ToneSource(700, -20, codec.AudioRate()))
				ep := newWideEndpoint(b, p.conn, codec, codec.PayloadType(), rate)
				ep.Receive(time.Now(), NewRecvBuffer())
				type pkt struct {
					ts      uint32
					payload []byte
				}
				var pkts []pkt
				for range 250 {
					payload, ts, _ := p.next()
					pkts = append(pkts, pkt{ts, append([]byte(nil), payload...)})
				}
				h := (*endpointHandler)(ep.st)
				frame := make([]int16, rate/50)
				audiotest.Tone(frame, 500, -20, rate, new(float64))
				ssrc, base, k := uint32(9), uint32(0), 0
				b.ReportAllocs()
				for b.Loop() {
					q := pkts[k%len(pkts)]
					h.Audio(ssrc, q.ts+base, codec, q.payload)
					if k++; k%len(pkts) == 0 {
						base += uint32(len(pkts) * codec.RTPClockRate() / 50)
					}
					ep.Pull(frame)
					_ = ep.Push(frame)
				}
			})
		}
	}
}

// TestEndpointRateSwitch: a call whose room changes rate 8 → 16 → 48 →
// 8 → 48 → 16 → 8 kHz, with PullSwitch and PushSwitch at each change,
// hears its own tone (pulled and pushed straight back: both directions)
// without a click: no sample step beyond the tone's own steepest by more
// than its codec's noise, every 20 ms at the tone's level ±1 dB, and the
// RTP timestamps continuous (G.711 packets shorter or longer by
// HandoverSamples at the changes to and from 8 kHz).
func TestEndpointRateSwitch(t *testing.T) {
	for _, codec := range []Codec{PCMU, G722, Opus} {
		t.Run(codec.String(), func(t *testing.T) {
			testRateSwitch(t, codec, true)
		})
	}
}

func testRateSwitch(t *testing.T, codec Codec, handover bool) {
	const f, level = 500.0, -20.0
	ar := codec.AudioRate()
	p := newWidePhone(t, codec, codec.PayloadType(), 20, opus.DefaultConfig(), audiotest.ToneSource(f, level, ar))
	sess := newTestSession(t, Params{Remote: addrOf(p.conn), Codec: codec, Direction: SendRecv})
	ep := NewEndpoint(sess)
	rx := NewRecvBuffer()
	rates := []int{8000, 16000, 48000, 8000, 48000, 16000, 8000}
	var heard []int16
	var dec16 *g722.Decoder
	var decO *opus.Decoder
	switch codec {
	case G722:
		dec16 = g722.NewDecoder()
	case Opus:
		var err error
		if decO, err = opus.NewDecoder(); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]int16, opus.MaxFrameSamples)
	var nextTS uint32
	got := false
	cur := make([]int16, 960)
	old := make([]int16, 960)
	rate := 8000
	for tick := range 15 * len(rates) {
		switched := false
		if r := rates[tick/15]; r != rate {
			if err := ep.SetRate(r); err != nil {
				t.Fatal(err)
			}
			old = old[:rate/50]
			rate, switched = r, true
		}
		payload, ts, seq := p.next()
		send(t, p.conn, sess.LocalAddr(), rtpPacket(t, p.pt, seq, ts, 77, payload))
		deadline := time.Now().Add(2 * time.Second)
		for ep.Receive(time.Now(), rx) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("nothing received")
			}
		}
		cur = cur[:rate/50]
		var err error
		if switched && handover {
			ep.PullSwitch(old, cur)
			err = ep.PushSwitch(old, cur)
		} else {
			ep.Pull(cur)
			err = ep.Push(cur)
		}
		if err != nil {
			t.Fatal(err)
		}
		pkt, _, ok := recvRTP(t, p.conn, 2*time.Second)
		if !ok {
			t.Fatal("nothing sent back")
		}
		if got && pkt.Timestamp != nextTS {
			t.Fatalf("tick %d: timestamp %d, want %d (continuous)", tick, pkt.Timestamp, nextTS)
		}
		var n int
		switch codec {
		case G722:
			n = dec16.Decode(buf, pkt.Payload)
			nextTS = pkt.Timestamp + uint32(len(pkt.Payload))
		case Opus:
			if n, err = decO.Decode(buf, pkt.Payload); err != nil {
				t.Fatal(err)
			}
			nextTS = pkt.Timestamp + uint32(n)
		default:
			n = codec.Decode(buf, pkt.Payload)
			nextTS = pkt.Timestamp + uint32(n)
		}
		got = true
		heard = append(heard, buf[:n]...)
	}
	heard = heard[5*ar/50:]
	// The tone's steepest step, and what the codec adds to it.
	amp := math.Pow(10, level/20) * 32767
	steep := amp * 2 * math.Sin(math.Pi*f/float64(ar))
	noise := map[Codec]float64{PCMU: 0.15, G722: 0.2, Opus: 0.3}[codec]
	limit := steep * (1 + noise)
	n := ar / 50
	for i := 1; i < len(heard); i++ {
		if d := math.Abs(float64(heard[i]) - float64(heard[i-1])); d > limit {
			t.Fatalf("a click at %.1f ms: a step of %.0f, the tone's steepest is %.0f", float64(i)*1000/float64(ar)+100, d, steep)
		}
	}
	for k := 0; k+n <= len(heard); k += n {
		if l := audiotest.LevelDBFS(heard[k:k+n], f, ar); math.Abs(l-level) > 1 {
			t.Fatalf("at %d ms the tone is at %.1f dBFS, want %.0f ± 1", k*1000/ar+100, l, level)
		}
	}
}

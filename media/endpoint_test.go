package media

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"

	"chorus/dtmf"
)

// TestEndpoint: what a phone sends comes out of Pull as PCM and of Digits
// as keys; what is pushed reaches the phone, encoded in the session's
// codec (Push) or as it is (PushShared).
func TestEndpoint(t *testing.T) {
	phone := listenLoopback(t)
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMA, TelephoneEventPT: 101, Direction: SendRecv})
	ep := NewEndpoint(sess)
	if ep.Session() != sess || ep.Codec() != PCMA {
		t.Fatal("the endpoint does not report its session and codec")
	}
	var pcm [FrameSamples]int16
	for i := range pcm {
		pcm[i] = int16((i%16 - 8) * 1000)
	}
	var payload [FrameSamples]byte
	PCMA.Encode(payload[:], pcm[:])
	for k := range 3 {
		send(t, phone, sess.LocalAddr(), rtpPacket(t, PayloadTypePCMA, uint16(10+k), uint32(1000+k*FrameSamples), 77, payload[:]))
	}
	pkts, err := dtmf.EncodeDigit('7', 60, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	send(t, phone, sess.LocalAddr(), rtpPacket(t, 101, 13, 9000, 77, pkts[0].Payload[:]))

	rx := NewRecvBuffer()
	var digits []rune
	deadline := time.Now().Add(2 * time.Second)
	for got := 0; got < 4; {
		got += ep.Receive(time.Now(), rx)
		digits = append(digits, ep.Digits()...)
		if time.Now().After(deadline) {
			t.Fatalf("received %d datagrams, want 4", got)
		}
	}
	if string(digits) != "7" {
		t.Errorf("digits %q, want \"7\"", string(digits))
	}
	var got [FrameSamples]int16
	if !ep.Pull(got[:]) {
		t.Fatal("Pull: stream not live")
	}
	var want [FrameSamples]int16
	PCMA.Decode(want[:], payload[:])
	if got != want {
		t.Errorf("Pull gave %v..., want %v...", got[:8], want[:8])
	}

	if err := ep.Push(pcm[:]); err != nil {
		t.Fatal(err)
	}
	p, _, ok := recvRTP(t, phone, 2*time.Second)
	if !ok || p.PayloadType != PayloadTypePCMA || !bytes.Equal(p.Payload, payload[:]) {
		t.Fatalf("Push: got %v, want the PCMA encode of the frame", p)
	}
	shared := bytes.Repeat([]byte{0x55}, FrameSamples)
	if err := ep.PushShared(shared); err != nil {
		t.Fatal(err)
	}
	p, _, ok = recvRTP(t, phone, 2*time.Second)
	if !ok || !bytes.Equal(p.Payload, shared) {
		t.Fatalf("PushShared: got %v, want the payload as it is", p)
	}
	if !ep.Proven() || ep.LastReceived().IsZero() {
		t.Error("the endpoint does not report its proven source")
	}
	if _, held := ep.HeldSince(); held {
		t.Error("a sendrecv endpoint reports hold")
	}
}

// TestEndpointNoAllocs: a tick's Receive, Pull and Push allocate nothing.
func TestEndpointNoAllocs(t *testing.T) {
	phone := listenLoopback(t)
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMU, Direction: SendRecv})
	ep := NewEndpoint(sess)
	rx := NewRecvBuffer()
	pkt := rtpPacket(t, PayloadTypePCMU, 1, 0, 5, make([]byte, FrameSamples))
	var frame [FrameSamples]int16
	shared := make([]byte, FrameSamples)
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		send(t, phone, sess.LocalAddr(), pkt)
		ep.Receive(now, rx)
		ep.Pull(frame[:])
		_ = ep.Push(frame[:])
		_ = ep.PushShared(shared)
	})
	if allocs != 0 {
		t.Errorf("a tick of the endpoint allocates %.1f times", allocs)
	}
}

// TestEndpointRate: in a room mixed at 16 kHz, Pull gives 320 samples of
// the 8 kHz caller up-sampled, and Push takes 320 and sends 160 bytes of
// G.711 carrying the tone at its level.
func TestEndpointRate(t *testing.T) {
	phone := listenLoopback(t)
	sess := newTestSession(t, Params{Remote: addrOf(phone), Codec: PCMU, Direction: SendRecv})
	ep := NewEndpoint(sess)
	if err := ep.SetRate(16000); err != nil {
		t.Fatal(err)
	}
	if err := ep.SetRate(44100); err == nil {
		t.Error("SetRate(44100) accepted")
	}
	var wide [320]int16
	for i := range wide {
		wide[i] = int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/16000))
	}
	for range 5 {
		if err := ep.Push(wide[:]); err != nil {
			t.Fatal(err)
		}
	}
	var last *rtp.Packet
	for range 5 {
		p, _, ok := recvRTP(t, phone, 2*time.Second)
		if !ok {
			t.Fatal("Push sent nothing")
		}
		if len(p.Payload) != FrameSamples {
			t.Fatalf("Push at 16 kHz sent %d bytes, want %d", len(p.Payload), FrameSamples)
		}
		last = p
	}
	var nb [FrameSamples]int16
	PCMU.Decode(nb[:], last.Payload)
	var peak int16
	for _, s := range nb {
		peak = max(peak, s)
	}
	if peak < 7000 || peak > 9000 {
		t.Errorf("a 1 kHz tone of peak 8000 arrives with peak %d", peak)
	}
	if live := ep.Pull(wide[:]); live {
		t.Error("Pull with nothing received reports a live stream")
	}
}

package sip

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/zaf/g711"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

// capture keeps copies of the datagrams a phone's RTP socket receives.
type capture struct {
	mu sync.Mutex
	d  [][]byte
}

func (c *capture) add(b []byte) {
	c.mu.Lock()
	c.d = append(c.d, append([]byte(nil), b...))
	c.mu.Unlock()
}

func (c *capture) datagrams() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.d...)
}

// sessions returns the RTP sessions of the bridge's inbound calls.
func (tb *testBridge) sessions() []*media.Session {
	tb.srv.mu.Lock()
	defer tb.srv.mu.Unlock()
	var out []*media.Session
	for _, c := range tb.srv.calls {
		out = append(out, c.sess)
	}
	return out
}

// checkCiphertext checks captured SRTP datagrams carrying G.711 μ-law with
// a tone at freq: the payloads, decoded as if they were plain μ-law, hold
// nothing at freq, and their bytes are spread evenly over 0..255 (a
// chi-square test; plain G.711 of a tone uses a few dozen code values).
func checkCiphertext(t *testing.T, dgrams [][]byte, tag int, freq float64) {
	t.Helper()
	var hist [256]int
	var pcm []int16
	total := 0
	for _, d := range dgrams {
		if len(d) < 12+tag || (d[1]&0x7f >= 72 && d[1]&0x7f <= 76) {
			continue
		}
		p := d[12 : len(d)-tag]
		for _, b := range p {
			hist[b]++
			pcm = append(pcm, g711.DecodeUlawFrame(b))
		}
		total += len(p)
	}
	if total < 8000 {
		t.Fatalf("captured only %d payload bytes", total)
	}
	exp := float64(total) / 256
	chi := 0.0
	for _, n := range hist {
		chi += (float64(n) - exp) * (float64(n) - exp) / exp
	}
	// 255 degrees of freedom: mean 255, sd ~22.6; 400 is > 6 sd.
	if chi > 400 {
		t.Errorf("payload bytes are not evenly spread: chi-square %.0f over %d bytes", chi, total)
	}
	if got := level(pcm, freq); got > -30 {
		t.Errorf("the tone is in the captured payload at %.1f dBFS: plaintext G.711 on the wire", got)
	}
}

// TestSRTPCallersHearEachOther: two testphones offering RTP/SAVP (one per
// suite) hear each other at the sent level through the bridge; what the
// bridge sends them is ciphertext; a forged SRTP packet is dropped and
// counted, never played.
func TestSRTPCallersHearEachOther(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 28500, 28599)
	var capA capture
	a := tb.dial(t, testphone.Options{User: "1000", Codecs: []string{"PCMU"}, SRTP: "AES_CM_128_HMAC_SHA1_80",
		Source: audiotest.ToneSource(distinctTones[0], -12, 8000), OnDatagram: capA.add})
	b := tb.dial(t, testphone.Options{User: "1000", Codecs: []string{"PCMU"}, SRTP: "AES_CM_128_HMAC_SHA1_32",
		Source: audiotest.ToneSource(distinctTones[1], -12, 8000)})
	time.Sleep(500 * time.Millisecond) // jitter buffers prime
	recs := listen(2*time.Second, a, b)
	for i, rec := range recs {
		other := distinctTones[1-i]
		if got := level(rec, other); math.Abs(got+12) > 2 {
			t.Errorf("caller %d hears the other at %.1f dBFS, want -12 ± 2 (stats %+v, SRTP failures %d)",
				i, got, []*testphone.Phone{a, b}[i].Stats(), []*testphone.Phone{a, b}[i].SRTPFailures())
		}
		if got := level(rec, distinctTones[i]); got > -60 {
			t.Errorf("caller %d hears itself at %.1f dBFS", i, got)
		}
	}
	if a.SRTPFailures() != 0 || b.SRTPFailures() != 0 {
		t.Errorf("phones saw SRTP failures: %d, %d", a.SRTPFailures(), b.SRTPFailures())
	}
	checkCiphertext(t, capA.datagrams(), 10, distinctTones[1])

	// Forged packets: what the bridge sent a, with a bit flipped, sent back
	// from a's own address (the latched source). The bridge holds a
	// different key for a's direction, and the tag no longer matches.
	sessions := tb.sessions()
	if len(sessions) != 2 {
		t.Fatalf("%d sessions, want 2", len(sessions))
	}
	before := map[*media.Session]media.SessionStats{}
	for _, s := range sessions {
		before[s] = s.Stats()
		if s.SRTP() == nil {
			t.Errorf("session %v is not SRTP", s.LocalAddr())
		}
	}
	dg := capA.datagrams()
	const forged = 20
	for i := range forged {
		d := dg[len(dg)-1-i]
		d[len(d)/2] ^= 0x10
		if err := a.SendRaw(d); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "forged packets counted", func() bool {
		n := uint64(0)
		for _, s := range sessions {
			n += s.Stats().AuthFailures - before[s].AuthFailures
		}
		return n == forged
	})
}

// TestSRTPPolicy: --srtp required refuses a plain offer with 488 and takes
// an SRTP one; --srtp off refuses an RTP/SAVP offer with 488 and takes a
// plain one; optional (the default) takes both.
func TestSRTPPolicy(t *testing.T) {
	for _, c := range []struct {
		policy       SRTPPolicy
		plain, srtp  int // want: 0 answered, else the status
		rtpLo, rtpHi int
	}{
		{SRTPRequired, 488, 0, 28600, 28619},
		{SRTPOff, 0, 488, 28620, 28639},
		{SRTPOptional, 0, 0, 28640, 28659},
	} {
		t.Run(c.policy.String(), func(t *testing.T) {
			tb := startBridge(t, bridge.Config{AutoCreate: true}, c.rtpLo, c.rtpHi, func(cfg *Config) { cfg.SRTP = c.policy })
			for _, suite := range []string{"", "AES_CM_128_HMAC_SHA1_80"} {
				want := c.plain
				if suite != "" {
					want = c.srtp
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				p, err := testphone.Dial(ctx, testphone.Options{Target: tb.udp.String(), User: "1000", SRTP: suite})
				cancel()
				var se *testphone.StatusError
				switch {
				case want == 0 && err != nil:
					t.Errorf("SRTP %q: %v, want answered", suite, err)
				case want != 0 && (!errors.As(err, &se) || se.Code != want):
					t.Errorf("SRTP %q: %v, want %d", suite, err, want)
				}
				if p != nil {
					p.Close()
				}
			}
		})
	}
}

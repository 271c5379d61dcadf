package sip

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

const (
	key80 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
	key32 = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
)

func savpOffer(proto string, crypto ...string) string {
	s := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 " + proto + " 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	for _, c := range crypto {
		s += "a=crypto:" + c + "\r\n"
	}
	return s
}

// TestParseSDPCrypto: RTP/SAVP streams are taken apart, usable a=crypto
// lines kept in order, unusable ones (other suites, bad keys) left out.
func TestParseSDPCrypto(t *testing.T) {
	body := savpOffer("RTP/SAVP",
		"1 AEAD_AES_256_GCM inline:"+key80+key80,
		"2 AES_CM_128_HMAC_SHA1_32 inline:"+key32,
		"3 AES_CM_128_HMAC_SHA1_80 inline:short",
		"4 AES_CM_128_HMAC_SHA1_80 inline:"+key80+"|2^31")
	d, err := ParseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Secure || len(d.Crypto) != 2 || d.Crypto[0].Tag != 2 || d.Crypto[0].Key.Suite != media.AESCM128HMACSHA1_32 ||
		d.Crypto[1].Tag != 4 || d.Crypto[1].Key.Lifetime != 1<<31 {
		t.Errorf("got secure %v, crypto %+v", d.Secure, d.Crypto)
	}
	for _, proto := range []string{"RTP/SAVP", "RTP/SAVPF"} {
		if d, err := ParseSDP([]byte(savpOffer(proto, "1 AES_CM_128_HMAC_SHA1_80 inline:"+key80))); err != nil || !d.Secure || len(d.Crypto) != 1 {
			t.Errorf("%s: %+v, %v", proto, d, err)
		}
	}
	if d, err := ParseSDP([]byte(savpOffer("RTP/AVP", "1 AES_CM_128_HMAC_SHA1_80 inline:"+key80))); err != nil || d.Secure || len(d.Crypto) != 1 {
		t.Errorf("AVP with crypto: %+v, %v", d, err)
	}
	if _, err := ParseSDP([]byte(savpOffer("UDP/TLS/RTP/SAVP"))); !errors.Is(err, ErrNoAudio) {
		t.Errorf("DTLS-SRTP: %v, want ErrNoAudio", err)
	}
}

// TestSRTPAnswerPolicy is the decision table of srtpAnswer.
func TestSRTPAnswerPolicy(t *testing.T) {
	c80, _ := media.ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + key80)
	savp := Description{Secure: true, Crypto: []media.Crypto{c80}}
	savpNoKey := Description{Secure: true}
	avp := Description{}
	avpKey := Description{Crypto: []media.Crypto{c80}}
	for _, c := range []struct {
		policy    SRTPPolicy
		transport string
		offer     Description
		use       bool
		refused   bool
	}{
		{SRTPOptional, "UDP", savp, true, false},
		{SRTPOptional, "UDP", avp, false, false},
		{SRTPOptional, "UDP", avpKey, false, false},
		{SRTPOptional, "UDP", savpNoKey, false, true},
		{SRTPOptional, "TLS", avp, false, true},
		{SRTPOptional, "TLS", avpKey, true, false},
		{SRTPOptional, "TLS", savp, true, false},
		{SRTPRequired, "UDP", avp, false, true},
		{SRTPRequired, "TCP", savp, true, false},
		{SRTPRequired, "UDP", avpKey, true, false},
		{SRTPOff, "UDP", savp, false, true},
		{SRTPOff, "UDP", avp, false, false},
		{SRTPOff, "UDP", avpKey, false, false},
		{SRTPOff, "TLS", savp, true, false},
	} {
		s := &Server{cfg: Config{SRTP: c.policy}}
		use, err := s.srtpAnswer(c.offer, c.transport)
		if use != c.use || (err != nil) != c.refused || (err != nil && !errors.Is(err, ErrSRTPPolicy)) {
			t.Errorf("%v over %s, secure %v with %d keys: use %v err %v", c.policy, c.transport, c.offer.Secure, len(c.offer.Crypto), use, err)
		}
	}
	if code, _ := statusFor(ErrSRTPPolicy); code != 488 {
		t.Errorf("ErrSRTPPolicy maps to %d, want 488", code)
	}
	for _, v := range []string{"off", "optional", "required"} {
		if p, err := ParseSRTPPolicy(v); err != nil || p.String() != v {
			t.Errorf("%q: %v %v", v, p, err)
		}
	}
	if _, err := ParseSRTPPolicy("maybe"); err == nil {
		t.Error("maybe: no error")
	}
}

// TestAnswerSAVPRoundTrip: our SRTP answer is RTP/SAVP with our a=crypto
// and parses back.
func TestAnswerSAVPRoundTrip(t *testing.T) {
	key, _ := media.NewSRTPKey(media.AESCM128HMACSHA1_32)
	cr := media.Crypto{Tag: 5, Key: key}
	b, err := buildSDP(sdpParams{sessionID: 7, version: 1, addr: netip.MustParseAddr("192.0.2.10"), port: 10002,
		formats: []Format{{Codec: media.PCMU}}, direction: media.SendRecv, secure: true, crypto: &cr})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "m=audio 10002 RTP/SAVP 0") || !strings.Contains(string(b), "a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:") {
		t.Errorf("answer:\n%s", b)
	}
	d, err := ParseSDP(b)
	if err != nil || !d.Secure || len(d.Crypto) != 1 || d.Crypto[0].Key.Master != key.Master {
		t.Errorf("round trip: %+v %v", d, err)
	}
}

// TestSRTPLateOfferAndReInvite: with SRTP required, a caller without SDP
// gets our RTP/SAVP offer and answers in the ACK; an SRTP caller holds and
// resumes by re-INVITE (same key) and still hears the room; a re-INVITE
// offering plain RTP on an SRTP call is refused with 488.
func TestSRTPLateOfferAndReInvite(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 28800, 28819, func(c *Config) { c.SRTP = SRTPRequired })
	late := tb.dial(t, testphone.Options{User: "1000", NoSDPInOffer: true, Codecs: []string{"PCMU"}, SRTP: "AES_CM_128_HMAC_SHA1_80",
		Source: audiotest.ToneSource(distinctTones[0], -12, 8000)})
	early := tb.dial(t, testphone.Options{User: "1000", Codecs: []string{"PCMU"}, SRTP: "AES_CM_128_HMAC_SHA1_80",
		Source: audiotest.ToneSource(distinctTones[1], -12, 8000)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := early.ReInvite(ctx, "sendonly"); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if err := early.ReInvite(ctx, "sendrecv"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	recs := listen(1500*time.Millisecond, late, early)
	for i, rec := range recs {
		if got := level(rec, distinctTones[1-i]); math.Abs(got+12) > 2 {
			t.Errorf("caller %d hears the other at %.1f dBFS, want -12 ± 2", i, got)
		}
	}
	for _, s := range tb.sessions() {
		if s.SRTP() == nil || s.Stats().AuthFailures != 0 {
			t.Errorf("session %v: SRTP %v, stats %+v", s.LocalAddr(), s.SRTP() != nil, s.Stats())
		}
	}
}

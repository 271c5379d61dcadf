package sip

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/media"
)

// srtpUAS is a far end that answers INVITEs: with SRTP (its own key for
// the offer's first a=crypto) when secure, else plain RTP. It keeps the
// offers it got.
type srtpUAS struct {
	addr   netip.AddrPort
	offers chan Description
	// answer picks the answer's format and telephone-event from the
	// offer; nil answers as a G.711 phone without telephone-event.
	answer func(Description) (Format, uint8)
}

func newSRTPUAS(t *testing.T, secure bool) *srtpUAS { return newAnsweringUAS(t, secure, nil) }

// newAnsweringUAS is newSRTPUAS whose answers answer picks (see srtpUAS.answer).
func newAnsweringUAS(t *testing.T, secure bool, answer func(Description) (Format, uint8)) *srtpUAS {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &srtpUAS{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), offers: make(chan Description, 4), answer: answer}
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close(); _ = rtpConn.Close(); _ = ua.Close() })
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		offer, err := ParseSDP(req.Body())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
			return
		}
		u.offers <- offer
		p := sdpParams{sessionID: 1, version: 1, addr: netip.MustParseAddr("127.0.0.1"),
			port: rtpConn.LocalAddr().(*net.UDPAddr).Port, formats: g711First(offer), direction: media.SendRecv}
		if u.answer != nil {
			f, te := u.answer(offer)
			p.formats = []Format{f}
			p.te8k, p.te48k = teSlots(f.Codec, te)
		}
		if secure && len(offer.Crypto) > 0 {
			key, _ := media.NewSRTPKey(offer.Crypto[0].Key.Suite)
			p.secure, p.crypto = true, &media.Crypto{Tag: offer.Crypto[0].Tag, Key: key}
		}
		body, _ := buildSDP(p)
		res := sip.NewSDPResponseFromRequest(req, body)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "uas", Host: "127.0.0.1", Port: int(u.addr.Port())}})
		_ = tx.Respond(res)
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	return u
}

// TestDialOutSRTP: with --srtp required our dial-out offer is RTP/SAVP
// with one a=crypto; an SRTP answer makes an SRTP call, a plain answer
// ends the call.
func TestDialOutSRTP(t *testing.T) {
	allowed := egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tb := startBridge(t, bridge.Config{}, 28900, 28919, func(c *Config) { c.Targets = allowed; c.SRTP = SRTPRequired })
	tb.b.SetDialer(tb.srv)

	uas := newSRTPUAS(t, true)
	call, err := tb.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "+1", To: "sip:x@" + uas.addr.String(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	offer := <-uas.offers
	if !offer.Secure || len(offer.Crypto) != 1 || offer.Crypto[0].Key.Suite != media.AESCM128HMACSHA1_80 {
		t.Errorf("our offer: secure %v, crypto %+v", offer.Secure, offer.Crypto)
	}
	waitFor(t, "dial-out answered", func() bool { return call.State() == bridge.CallActive })
	tb.srv.mu.Lock()
	for _, c := range tb.srv.outCalls {
		if c.sess.SRTP() == nil {
			t.Error("the dialled call is not SRTP")
		}
	}
	n := len(tb.srv.outCalls)
	tb.srv.mu.Unlock()
	if n != 1 {
		t.Errorf("%d dialled calls, want 1", n)
	}
	_ = call.Hangup(t.Context(), "test-over")

	plain := newSRTPUAS(t, false)
	if cause := dialEnd(t, tb.b, "sip:x@127.0.0.1:"+strconv.Itoa(int(plain.addr.Port()))); cause == "" {
		t.Error("a plain answer to our SRTP offer did not end the call")
	}
}

// g711First is the answer of a G.711 phone: the first G.711 format offered.
func g711First(offer Description) []Format {
	f, _ := offer.Choose([]media.Codec{media.PCMU, media.PCMA})
	return []Format{f}
}

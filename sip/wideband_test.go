package sip

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/internal/testphone"
	"chorus/media"
	"chorus/media/opus"
)

// inLeg returns the bridge's leg of the inbound call whose SIP Call-ID is id.
func inLeg(t *testing.T, tb *testBridge, id string) *inCall {
	t.Helper()
	var found *inCall
	waitFor(t, "the call's leg", func() bool {
		tb.srv.mu.Lock()
		defer tb.srv.mu.Unlock()
		for _, c := range tb.srv.calls {
			if c.dlg.InviteRequest.CallID().Value() == id {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// TestWidebandAnswer: the offer's order wins among the codecs we have
// enabled; Opus is answered at the offer's payload type with the peer's
// fmtp kept for our encoder, each codec gets the telephone-event at its
// own clock rate, and an offer with nothing enabled gets 488.
func TestWidebandAnswer(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24000, 24099)
	for _, c := range []struct {
		offer []string
		codec media.Codec
		pt    uint8
		te    uint8 // the phone's telephone-event at the codec's clock (testphone offers 101 at 8000, 100 at 48000)
	}{
		{[]string{"OPUS", "G722", "PCMU"}, media.Opus, 107, 100},
		{[]string{"G722", "OPUS", "PCMU"}, media.G722, 9, 101},
		{[]string{"G722"}, media.G722, 9, 101},
		{[]string{"PCMA", "OPUS"}, media.PCMA, 8, 101},
		{[]string{"OPUS"}, media.Opus, 107, 101}, // a lone codec: the phone puts its one event at 48000
	} {
		p := tb.dial(t, testphone.Options{User: "2000", Codecs: c.offer})
		want := map[media.Codec]string{media.Opus: "OPUS", media.G722: "G722", media.PCMA: "PCMA"}[c.codec]
		if p.Codec() != want || p.PayloadType() != c.pt {
			t.Errorf("offer %v: phone got %s pt %d, want %s pt %d", c.offer, p.Codec(), p.PayloadType(), want, c.pt)
		}
		got := inLeg(t, tb, p.CallID()).sess.Params()
		if got.Codec != c.codec || got.PayloadType != c.pt || got.TelephoneEventPT != c.te {
			t.Errorf("offer %v: session %v pt %d te %d, want %v pt %d te %d", c.offer, got.Codec, got.PayloadType, got.TelephoneEventPT,
				c.codec, c.pt, c.te)
		}
		if c.codec == media.Opus && !got.Opus.UseInbandFEC {
			t.Errorf("offer %v: the phone's useinbandfec=1 did not reach the session: %+v", c.offer, got.Opus)
		}
		p.Close()
	}
	// A late offer (INVITE without SDP) gets our full offer and the
	// phone's answer picks G.722 from it.
	p := tb.dial(t, testphone.Options{User: "2000", NoSDPInOffer: true, Codecs: []string{"G722"}})
	leg := inLeg(t, tb, p.CallID())
	waitFor(t, "the answer in the ACK applied", func() bool { return leg.sess.Params().Codec != media.CodecInvalid })
	if got := leg.sess.Params(); p.Codec() != "G722" || got.Codec != media.G722 || got.TelephoneEventPT != 101 {
		t.Errorf("late offer: phone %s, session %v te %d", p.Codec(), got.Codec, got.TelephoneEventPT)
	}
}

// TestCodecsConfig: Config.Codecs filters what an answer may take (488
// when nothing is left) without changing the offer's order.
func TestCodecsConfig(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24100, 24199, func(c *Config) { c.Codecs = []media.Codec{media.PCMA, media.PCMU} })
	p := tb.dial(t, testphone.Options{User: "2000", Codecs: []string{"OPUS", "G722", "PCMU", "PCMA"}})
	if p.Codec() != "PCMU" {
		t.Errorf("with opus and G722 disabled the answer took %s, want PCMU (the offer's order)", p.Codec())
	}
	_, err := testphone.Dial(t.Context(), testphone.Options{Target: tb.udp.String(), User: "2000", Codecs: []string{"OPUS", "G722"}})
	if se := (*testphone.StatusError)(nil); !errors.As(err, &se) || se.Code != 488 {
		t.Errorf("an offer of only disabled codecs: %v, want 488", err)
	}
}

// TestReInviteCodec: a re-INVITE that still offers the codec in use keeps
// it, one that does not moves to its first enabled codec, and one with
// none gets 488 and leaves the session as it was (RFC 3261 §14.2).
func TestReInviteCodec(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24200, 24299)
	p := tb.dial(t, testphone.Options{User: "2000", Codecs: []string{"OPUS", "PCMU"}})
	leg := inLeg(t, tb, p.CallID())
	remote := p.RTPAddr().String()
	if _, err := leg.update([]byte(offerSDP(int(p.RTPAddr().Port()), "0 96 101", "96 opus/48000/2", "101 telephone-event/8000"))); err != nil {
		t.Fatal(err)
	}
	if got := leg.sess.Params(); got.Codec != media.Opus || got.PayloadType != 96 || got.TelephoneEventPT != 0 || got.Remote.String() != remote {
		t.Errorf("re-INVITE still offering Opus (now at 96): %v pt %d te %d remote %v", got.Codec, got.PayloadType, got.TelephoneEventPT, got.Remote)
	}
	ans, err := leg.update([]byte(offerSDP(int(p.RTPAddr().Port()), "9 8 101", "101 telephone-event/8000")))
	if err != nil {
		t.Fatal(err)
	}
	if got := leg.sess.Params(); got.Codec != media.G722 || got.PayloadType != 9 || got.TelephoneEventPT != 101 {
		t.Errorf("re-INVITE without Opus: %v pt %d te %d, want G722 9 101", got.Codec, got.PayloadType, got.TelephoneEventPT)
	}
	if d, err := ParseSDP(ans); err != nil || len(d.Formats) != 1 || d.Formats[0].Codec != media.G722 || d.TelephoneEvent8k != 101 {
		t.Errorf("answer %+v %v\n%s", d, err, ans)
	}
	before := leg.sess.Params()
	if _, err := leg.update([]byte(offerSDP(4000, "18", "18 G729/8000"))); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("re-INVITE with G.729 only: %v, want ErrNoCommonCodec", err)
	}
	if got := leg.sess.Params(); got != before {
		t.Errorf("a refused re-INVITE changed the session: %+v -> %+v", before, got)
	}
	// A re-INVITE without SDP gets our full offer, the payload types in
	// use kept, and the answer in the ACK is applied.
	off, err := leg.update(nil)
	d, perr := ParseSDP(off)
	want := []Format{{Codec: media.Opus, PT: 111, Opus: opus.Fmtp{MaxPlaybackRate: 48000, SpropMaxCaptureRate: 48000, UseInbandFEC: true, Ptime: 20}},
		{Codec: media.G722, PT: 9}, {Codec: media.PCMU}, {Codec: media.PCMA, PT: 8}}
	if err != nil || perr != nil || !reflect.DeepEqual(d.Formats, want) || d.TelephoneEvent8k != 101 || d.TelephoneEvent48k != telephoneEventPT48k {
		t.Errorf("offer in the 200 to a re-INVITE without SDP: %+v %v %v\n%s", d, err, perr, off)
	}
	ack := sip.NewRequest(sip.ACK, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	ack.SetBody([]byte(offerSDP(int(p.RTPAddr().Port()), "0 101", "101 telephone-event/8000")))
	leg.gotAck(ack)
	if got := leg.sess.Params(); got.Codec != media.PCMU || got.TelephoneEventPT != 101 {
		t.Errorf("after the answer in the ACK: %v te %d, want PCMU te 101", got.Codec, got.TelephoneEventPT)
	}

	// Opus at 101 and telephone-event/48000 at 96 in use: a refresh offer
	// keeps both numbers and moves telephone-event/8000 off 101.
	if _, err := leg.update([]byte(offerSDP(int(p.RTPAddr().Port()), "101 96", "101 opus/48000/2", "96 telephone-event/48000"))); err != nil {
		t.Fatal(err)
	}
	off, err = leg.update(nil)
	d, perr = ParseSDP(off)
	if err != nil || perr != nil || d.Formats[0].Codec != media.Opus || d.Formats[0].PT != 101 || d.TelephoneEvent48k != 96 ||
		d.TelephoneEvent8k == 0 || d.TelephoneEvent8k == 101 || d.TelephoneEvent8k == 96 {
		t.Errorf("refresh offer with opus at 101 in use: %+v\n%s", d, off)
	}
}

// TestDialOutOffersWideband: our dial-out offer lists Opus 111 (with our
// fmtp), G722, PCMU, PCMA and telephone-event at 48000 and 8000, in the
// order of Config.Codecs; the answer's codec and its telephone-event are
// used.
func TestDialOutOffersWideband(t *testing.T) {
	allowed := egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tb := startBridge(t, bridge.Config{MaxMixRate: 16000}, 24300, 24319, func(c *Config) { c.Targets = allowed })
	tb.b.SetDialer(tb.srv)
	uas := newAnsweringUAS(t, false, func(d Description) (Format, uint8) { return d.Formats[0], d.TelephoneEventPT(d.Formats[0].Codec) })
	call, err := tb.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "+1", To: "sip:x@" + uas.addr.String(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	offer := <-uas.offers
	want := []Format{{Codec: media.Opus, PT: 111, Opus: opus.Fmtp{MaxPlaybackRate: 16000, SpropMaxCaptureRate: 16000, UseInbandFEC: true, Ptime: 20}},
		{Codec: media.G722, PT: 9}, {Codec: media.PCMU}, {Codec: media.PCMA, PT: 8}}
	if !reflect.DeepEqual(offer.Formats, want) || offer.TelephoneEvent48k != telephoneEventPT48k || offer.TelephoneEvent8k != telephoneEventPT {
		t.Errorf("our offer: %+v", offer)
	}
	waitFor(t, "dial-out answered", func() bool { return call.State() == bridge.CallActive })
	tb.srv.mu.Lock()
	for _, c := range tb.srv.outCalls {
		if got := c.sess.Params(); got.Codec != media.Opus || got.PayloadType != 111 || got.TelephoneEventPT != telephoneEventPT48k {
			t.Errorf("dialled call: %v pt %d te %d, want opus 111 te %d", got.Codec, got.PayloadType, got.TelephoneEventPT, telephoneEventPT48k)
		}
	}
	tb.srv.mu.Unlock()
	_ = call.Hangup(t.Context(), "test-over")

	tb2 := startBridge(t, bridge.Config{}, 24320, 24339, func(c *Config) { c.Targets = allowed; c.Codecs = []media.Codec{media.PCMU, media.G722} })
	tb2.b.SetDialer(tb2.srv)
	call2, err := tb2.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "+1", To: "sip:x@" + uas.addr.String(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	offer = <-uas.offers
	if !reflect.DeepEqual(offer.Formats, []Format{{Codec: media.PCMU}, {Codec: media.G722, PT: 9}}) || offer.TelephoneEvent48k != 0 || offer.TelephoneEvent8k != telephoneEventPT {
		t.Errorf("offer with Codecs PCMU,G722: %+v", offer)
	}
	waitFor(t, "second dial-out answered", func() bool { return call2.State() == bridge.CallActive })
	_ = call2.Hangup(t.Context(), "test-over")
}

package sip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/media"
	"chorus/media/opus"
)

// leg is the media side of a call, inbound or dialled: its RTP session and
// our session description towards the peer (RFC 3264 offer/answer), which
// either side may change during the call.
type leg struct {
	s         *Server
	sess      *media.Session
	call      *bridge.Call
	log       *slog.Logger
	sessionID uint64
	done      <-chan struct{} // closed when the dialog ends

	mu         sync.Mutex
	sdpVersion uint64
	ackBody    []byte
	ackCSeq    chan uint32 // CSeq numbers of ACKs, for 2xx retransmission
	sec        legSRTP     // SDES keys (srtp.go)
	// refresh is our offer in the 2xx to a re-INVITE without SDP, whose
	// answer the ACK carries (RFC 3261 §14.2); nil when none is pending.
	refresh *refreshOffer
}

// refreshOffer is what our offer to a re-INVITE without SDP said: the
// telephone-event payload types an answer may use.
type refreshOffer struct{ te8k, te48k uint8 }

// Media implements bridge.Leg.
func (c *leg) Media() *media.Session { return c.sess }

// inCall is an answered (or being answered) inbound call. It implements
// bridge.Leg.
type inCall struct {
	*leg
	dlg       *sipgo.DialogServerSession
	transport string
	// natTarget, when set, is where in-dialog requests to the caller go
	// instead of its unreachable Contact (see natTarget).
	natTarget string
}

// Hangup implements bridge.Leg: BYE to the caller.
//
// The BYE is sent at once (sipgo's WriteBye only waits while the dialog is
// unconfirmed) and retransmitted by the client transaction alone: Timer E
// over UDP, nothing over TCP (RFC 3261 §17.1.2.2).
func (c *inCall) Hangup(ctx context.Context, cause string) error {
	c.log.Info("hanging up", "cause", cause)
	if err := c.dlg.WriteBye(ctx, c.newBye()); err != nil {
		return fmt.Errorf("bye: %w", err)
	}
	return nil
}

// newBye builds the BYE to the caller: to the remote target (the INVITE's
// Contact), sent where the caller really is when it is behind a NAT, and
// over TCP and TLS on the connection the INVITE came in on (RFC 5923 §1's
// reuse, as phones expect: a phone listens for TLS only if it has a
// certificate of its own, which softphones rarely have). A route set, if
// any, still governs: sipgo sends to its first hop.
func (c *inCall) newBye() *sip.Request {
	inv := c.dlg.InviteRequest
	target := inv.Recipient
	if ct := inv.Contact(); ct != nil {
		target = ct.Address
	}
	bye := sip.NewRequest(sip.BYE, target)
	bye.SetTransport(inv.Transport())
	// Our Contact with its port; the dialog's default was made before the
	// listeners were bound.
	ct := c.s.contact(c.transport)
	bye.AppendHeader(&ct)
	switch {
	case c.natTarget != "":
		bye.SetDestination(c.natTarget)
	case !isUDP(inv.Transport()) && inv.Source() != "":
		bye.SetDestination(inv.Source())
	}
	return bye
}

func (c *leg) gotAck(req *sip.Request) {
	c.mu.Lock()
	if len(req.Body()) > 0 {
		c.ackBody = append([]byte(nil), req.Body()...)
	}
	ch := c.ackCSeq
	refresh := c.refresh
	if len(req.Body()) > 0 {
		c.refresh = nil
	}
	c.mu.Unlock()
	if refresh != nil && len(req.Body()) > 0 {
		c.applyRefreshAnswer(req.Body(), *refresh)
	}
	if ch != nil {
		select {
		case ch <- req.CSeq().SeqNo:
		default:
		}
	}
}

// applyRefreshAnswer applies the answer in the ACK to our offer in the 2xx
// to a re-INVITE without SDP. An answer we cannot use leaves the session
// as it was: the ACK cannot be refused, and the peer may yet send another
// offer.
func (c *leg) applyRefreshAnswer(body []byte, offered refreshOffer) {
	ans, err := ParseSDP(body)
	var f Format
	if err == nil {
		var ok bool
		if f, ok = ans.Choose(c.s.cfg.Codecs); !ok {
			err = ErrNoCommonCodec
		}
	}
	if err != nil {
		c.log.Info("answer in the ACK not applied", "err", err)
		return
	}
	te, want := ans.TelephoneEventPT(f.Codec), offered.te8k
	if f.Codec.RTPClockRate() == 48000 {
		want = offered.te48k
	}
	if te != want {
		te = 0
	}
	cur := c.sess.Params()
	dir := answerDirection(ans)
	remote := ans.Remote()
	if !remote.IsValid() {
		remote = cur.Remote
	}
	c.sess.SetParams(params(remote, f, te, dir))
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4
	c.log.Info("media updated", "remote", remote, "codec", f.Codec, "pt", f.PT, "direction", dir)
}

// sdp writes our session description with the given formats, the
// telephone-event payload types (0: none) and our direction.
func (c *leg) sdp(formats []Format, te8k, te48k uint8, dir media.Direction) ([]byte, error) {
	c.mu.Lock()
	v := c.sdpVersion
	c.sdpVersion++
	c.mu.Unlock()
	secure, crypto := c.sdpSRTP()
	return buildSDP(sdpParams{sessionID: c.sessionID, version: v, addr: c.s.cfg.PublicIP,
		port: int(c.sess.LocalAddr().Port()), formats: formats, te8k: te8k, te48k: te48k,
		opusFmtp: c.s.opusFmtp(), direction: dir, secure: secure, crypto: crypto})
}

// opusFmtp is our a=fmtp for Opus, what we ask of the peer's encoder (RFC
// 7587 §6.1): no band above what our rooms mix at, and in-band FEC, which
// our decoder uses on loss. Our ptime (a=ptime:20) is in every SDP of ours.
func (s *Server) opusFmtp() string {
	rate := 48000
	if s.bridge != nil {
		rate = min(rate, s.bridge.Config().MaxMixRate)
	}
	return opus.Fmtp{MaxPlaybackRate: rate, SpropMaxCaptureRate: rate, UseInbandFEC: true}.String()
}

// offerFormats are the formats of our own offers: the enabled codecs in
// the configured order, Opus at PayloadTypeOpus.
func (s *Server) offerFormats() []Format {
	out := make([]Format, 0, len(s.cfg.Codecs))
	for _, c := range s.cfg.Codecs {
		out = append(out, Format{Codec: c, PT: c.PayloadType()})
	}
	return out
}

// offerTelephoneEvents are the telephone-event payload types of our own
// offers: one at each RTP clock rate of the offered codecs.
func (s *Server) offerTelephoneEvents() (te8k, te48k uint8) {
	for _, c := range s.cfg.Codecs {
		if c.RTPClockRate() == 48000 {
			te48k = telephoneEventPT48k
		} else {
			te8k = telephoneEventPT
		}
	}
	return te8k, te48k
}

// teSlots places a telephone-event payload type at codec c's clock rate.
func teSlots(c media.Codec, pt uint8) (te8k, te48k uint8) {
	if c.RTPClockRate() == 48000 {
		return 0, pt
	}
	return pt, 0
}

// params are the session parameters of format f.
func params(remote netip.AddrPort, f Format, te uint8, dir media.Direction) media.Params {
	return media.Params{Remote: remote, Codec: f.Codec, PayloadType: f.PT, TelephoneEventPT: te,
		Direction: dir, Opus: f.Opus}
}

// answer applies the caller's offer and returns our answer: the first
// codec of theirs, in their order, that we have enabled, at their payload
// type, and their telephone-event at that codec's clock rate (RFC 3264
// §6.1, RFC 4733 §2.1). ErrNoCommonCodec (488) when none is enabled.
func (c *leg) answer(offer Description) ([]byte, error) {
	f, ok := offer.Choose(c.s.cfg.Codecs)
	if !ok {
		return nil, ErrNoCommonCodec
	}
	dir := answerDirection(offer)
	te := offer.TelephoneEventPT(f.Codec)
	c.sess.SetParams(params(offer.Remote(), f, te, dir))
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	te8k, te48k := teSlots(f.Codec, te)
	return c.sdp([]Format{f}, te8k, te48k, dir)
}

// offer returns our offer for an INVITE without SDP (answer in the ACK)
// and for dial-out: every enabled codec in the configured order and
// telephone-event at each of their clock rates.
func (c *leg) offer() ([]byte, error) {
	te8k, te48k := c.s.offerTelephoneEvents()
	return c.sdp(c.s.offerFormats(), te8k, te48k, media.SendRecv)
}

// chooseAnswer reads the peer's answer to our offer: the first format of
// the answer that we offered, and its telephone-event if it is the one we
// offered at that clock rate (an answer must use the offered payload
// types, RFC 3264 §6.1).
func (c *leg) chooseAnswer(ans Description) (Format, uint8, error) {
	f, ok := ans.Choose(c.s.cfg.Codecs)
	if !ok {
		return Format{}, 0, ErrNoCommonCodec
	}
	te := ans.TelephoneEventPT(f.Codec)
	want, want48k := c.s.offerTelephoneEvents()
	if f.Codec.RTPClockRate() == 48000 {
		want = want48k
	}
	if te != want {
		te = 0
	}
	return f, te, nil
}

// applyAckAnswer reads the SDP answer carried by the ACK.
func (c *leg) applyAckAnswer() error {
	c.mu.Lock()
	body := c.ackBody
	c.mu.Unlock()
	if len(body) == 0 {
		return fmt.Errorf("ACK carried no SDP answer: %w", ErrBadSDP)
	}
	ans, err := ParseSDP(body)
	if err != nil {
		return err
	}
	if err := c.applyAnswerSRTP(ans); err != nil {
		return err
	}
	f, te, err := c.chooseAnswer(ans)
	if err != nil {
		return err
	}
	dir := answerDirection(ans)
	c.sess.SetParams(params(ans.Remote(), f, te, dir))
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	return nil
}

// update applies an offer in a re-INVITE or UPDATE and returns our answer:
// the codec in use if the offer still has it (at the offer's payload type),
// else the first enabled one in the offer's order; an offer with none
// gets ErrNoCommonCodec (488) and leaves the session as it was (RFC 3261
// §14.2). Without an offer (a re-INVITE without SDP) it returns our offer,
// whose answer the ACK brings (gotAck).
func (c *leg) update(body []byte) ([]byte, error) {
	cur := c.sess.Params()
	if len(body) == 0 {
		formats, te8k, te48k := c.refreshFormats(cur)
		c.mu.Lock()
		c.refresh = &refreshOffer{te8k: te8k, te48k: te48k}
		c.mu.Unlock()
		return c.sdp(formats, te8k, te48k, cur.Direction)
	}
	c.mu.Lock()
	c.refresh = nil // a new offer from the peer supersedes ours
	c.mu.Unlock()
	offer, err := ParseSDP(body)
	if err != nil {
		return nil, err
	}
	f, ok := offer.find(cur.Codec)
	if !ok {
		if f, ok = offer.Choose(c.s.cfg.Codecs); !ok {
			return nil, ErrNoCommonCodec
		}
	}
	if err := c.reofferSRTP(offer); err != nil {
		return nil, err
	}
	dir := answerDirection(offer)
	remote := offer.Remote()
	if !remote.IsValid() {
		remote = cur.Remote // c=0.0.0.0 hold keeps the old address
	}
	te := offer.TelephoneEventPT(f.Codec)
	c.sess.SetParams(params(remote, f, te, dir))
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	c.log.Info("media updated", "remote", remote, "codec", f.Codec, "pt", f.PT, "direction", dir)
	te8k, te48k := teSlots(f.Codec, te)
	return c.sdp([]Format{f}, te8k, te48k, dir)
}

// refreshFormats is our offer to a re-INVITE without SDP: like our first
// offers, every enabled codec in the configured order with
// telephone-event at each clock rate, except that the dynamic payload
// types in use keep their meaning (RFC 3264 §8.3.2: a number's mapping
// must not change within a session) and the others avoid them.
func (c *leg) refreshFormats(cur media.Params) (formats []Format, te8k, te48k uint8) {
	var used [128]bool
	curPT := cur.PayloadType
	if cur.Codec != media.Opus {
		curPT = cur.Codec.PayloadType()
	}
	used[curPT&0x7f] = true
	if cur.TelephoneEventPT != 0 {
		used[cur.TelephoneEventPT&0x7f] = true
	}
	free := func(want uint8) uint8 {
		for i := range uint8(32) {
			pt := 96 + (want-96+i)%32
			if !used[pt] {
				used[pt] = true
				return pt
			}
		}
		return want // 32 dynamic numbers and at most three in use: not reached
	}
	for _, f := range c.s.offerFormats() {
		switch {
		case f.Codec == cur.Codec:
			f.PT = curPT
		case f.Codec == media.Opus:
			f.PT = free(f.PT)
		}
		formats = append(formats, f)
	}
	te8k, te48k = c.s.offerTelephoneEvents()
	curTE8k, curTE48k := teSlots(cur.Codec, cur.TelephoneEventPT)
	switch {
	case curTE8k != 0 && te8k != 0:
		te8k = curTE8k
		if te48k != 0 {
			te48k = free(te48k)
		}
	case curTE48k != 0 && te48k != 0:
		te48k = curTE48k
		if te8k != 0 {
			te8k = free(te8k)
		}
	default:
		if te8k != 0 {
			te8k = free(te8k)
		}
		if te48k != 0 {
			te48k = free(te48k)
		}
	}
	return formats, te8k, te48k
}

// respondReliably sends a 2xx to a re-INVITE and, over UDP, retransmits it
// until the ACK arrives (RFC 3261 §13.3.1.4), which sipgo leaves to us.
func (c *leg) respondReliably(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) {
	reliable := !isUDP(req.Transport())
	ch := make(chan uint32, 4)
	if !reliable {
		c.mu.Lock()
		c.ackCSeq = ch
		c.mu.Unlock()
	}
	if err := tx.Respond(res); err != nil || reliable {
		return
	}
	go func() {
		defer func() {
			c.mu.Lock()
			if c.ackCSeq == ch {
				c.ackCSeq = nil
			}
			c.mu.Unlock()
		}()
		want := req.CSeq().SeqNo
		interval := sip.T1
		deadline := time.After(64 * sip.T1)
		for {
			t := time.NewTimer(interval)
			select {
			case seq := <-ch:
				t.Stop()
				if seq == want {
					return
				}
			case <-t.C:
				_ = tx.Respond(res)
				interval = min(2*interval, sip.T2)
			case <-deadline:
				t.Stop()
				return
			case <-c.done:
				t.Stop()
				return
			}
		}
	}()
}

func isUDP(transport string) bool {
	return transport == "" || transport == "udp" || transport == "UDP"
}

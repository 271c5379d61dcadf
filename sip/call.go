package sip

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/media"
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
}

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
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- req.CSeq().SeqNo:
		default:
		}
	}
}

func (c *leg) sdp(codecs []media.Codec, te uint8, dir media.Direction) ([]byte, error) {
	c.mu.Lock()
	v := c.sdpVersion
	c.sdpVersion++
	c.mu.Unlock()
	secure, crypto := c.sdpSRTP()
	return buildSDP(sdpParams{sessionID: c.sessionID, version: v, addr: c.s.cfg.PublicIP,
		port: int(c.sess.LocalAddr().Port()), codecs: codecs, telephoneEventPT: te, direction: dir,
		secure: secure, crypto: crypto})
}

// answer applies the caller's offer and returns our answer: the first
// codec of theirs we support, their telephone-event payload type.
func (c *leg) answer(offer Description) ([]byte, error) {
	dir := answerDirection(offer)
	c.sess.SetParams(media.Params{Remote: offer.Remote(), Codec: offer.Codecs[0],
		TelephoneEventPT: offer.TelephoneEventPT, Direction: dir})
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	return c.sdp(offer.Codecs[:1], offer.TelephoneEventPT, dir)
}

// offer returns our offer for an INVITE without SDP (answer in the ACK).
func (c *leg) offer() ([]byte, error) {
	return c.sdp([]media.Codec{media.PCMU, media.PCMA}, telephoneEventPT, media.SendRecv)
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
	te := ans.TelephoneEventPT
	if te != 0 && te != telephoneEventPT {
		te = 0 // an answer must use the offered payload type
	}
	dir := answerDirection(ans)
	c.sess.SetParams(media.Params{Remote: ans.Remote(), Codec: ans.Codecs[0], TelephoneEventPT: te, Direction: dir})
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	return nil
}

// update applies an offer in a re-INVITE or UPDATE and returns our answer.
// Without an offer it returns our current description as an offer.
func (c *leg) update(body []byte) ([]byte, error) {
	cur := c.sess.Params()
	if len(body) == 0 {
		return c.sdp([]media.Codec{cur.Codec}, cur.TelephoneEventPT, cur.Direction)
	}
	offer, err := ParseSDP(body)
	if err != nil {
		return nil, err
	}
	if err := c.reofferSRTP(offer); err != nil {
		return nil, err
	}
	codec := offer.Codecs[0]
	for _, x := range offer.Codecs {
		if x == cur.Codec {
			codec = x // keep what we have if still offered
		}
	}
	dir := answerDirection(offer)
	remote := offer.Remote()
	if !remote.IsValid() {
		remote = cur.Remote // c=0.0.0.0 hold keeps the old address
	}
	c.sess.SetParams(media.Params{Remote: remote, Codec: codec, TelephoneEventPT: offer.TelephoneEventPT, Direction: dir})
	c.call.SetPhoneHold(dir != media.SendRecv) // RFC 3264 §8.4: its audio (hold music) stays out of the room
	c.log.Info("media updated", "remote", remote, "codec", codec, "direction", dir)
	return c.sdp([]media.Codec{codec}, offer.TelephoneEventPT, dir)
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

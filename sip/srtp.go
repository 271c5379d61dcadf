package sip

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"chorus/media"
)

// ErrSRTPPolicy is an offer or answer the SRTP policy refuses: plain RTP
// where SRTP is required, SRTP where it is off, or RTP/SAVP without an
// a=crypto we can use. It maps to 488 Not Acceptable Here.
var ErrSRTPPolicy = errors.New("SRTP policy")

// SRTPPolicy says when calls use SRTP with SDES keys (RFC 4568).
type SRTPPolicy uint8

// Policies. The zero value is the default.
const (
	// SRTPOptional answers an RTP/SAVP offer with SRTP and an RTP/AVP
	// offer with plain RTP.
	SRTPOptional SRTPPolicy = iota
	// SRTPRequired refuses plain offers with 488; our own offers are SRTP.
	SRTPRequired
	// SRTPOff refuses RTP/SAVP offers with 488 (except over TLS, which
	// always requires SRTP).
	SRTPOff
)

// ParseSRTPPolicy reads "off", "optional" or "required".
func ParseSRTPPolicy(s string) (SRTPPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "optional", "":
		return SRTPOptional, nil
	case "required":
		return SRTPRequired, nil
	case "off":
		return SRTPOff, nil
	}
	return SRTPOptional, fmt.Errorf("srtp: want off, optional or required, got %q", s)
}

// String returns the flag value.
func (p SRTPPolicy) String() string {
	switch p {
	case SRTPRequired:
		return "required"
	case SRTPOff:
		return "off"
	}
	return "optional"
}

func isTLS(transport string) bool { return strings.EqualFold(transport, "tls") }

// requiresSRTP reports whether a call over transport must use SRTP: the
// policy says so, or the signalling came over TLS (keys sent in the clear
// would otherwise be pointless to protect, and vice versa).
func (s *Server) requiresSRTP(transport string) bool {
	return s.cfg.SRTP == SRTPRequired || isTLS(transport)
}

// srtpAnswer decides whether an offer that arrived over transport is
// answered with SRTP (RFC 4568 §7.1.2), or refused. An RTP/AVP offer
// that carries a=crypto (best-effort SRTP, as baresip's mediaenc=srtp
// sends) is answered with SRTP only when SRTP is required.
func (s *Server) srtpAnswer(offer Description, transport string) (bool, error) {
	required := s.requiresSRTP(transport)
	switch {
	case offer.Secure && s.cfg.SRTP == SRTPOff && !required:
		return false, fmt.Errorf("%w: RTP/SAVP offered while SRTP is off", ErrSRTPPolicy)
	case offer.Secure || (required && len(offer.Crypto) > 0):
		if len(offer.Crypto) == 0 {
			return false, fmt.Errorf("%w: no usable a=crypto (want %s or %s)", ErrSRTPPolicy,
				media.AESCM128HMACSHA1_80, media.AESCM128HMACSHA1_32)
		}
		return true, nil
	case required:
		return false, fmt.Errorf("%w: plain RTP offered where SRTP is required", ErrSRTPPolicy)
	}
	return false, nil
}

// checkOffer refuses, before anything is set up, an initial offer the SRTP
// policy does not accept.
func (s *Server) checkOffer(offer Description, transport string) error {
	_, err := s.srtpAnswer(offer, transport)
	return err
}

// legSRTP is the SDES state of a leg (RFC 4568 §7), guarded by leg.mu.
type legSRTP struct {
	offering bool          // our offers are RTP/SAVP with a=crypto
	secure   bool          // our SDP says RTP/SAVP (else AVP with crypto)
	local    *media.Crypto // our attribute; nil while the call is plain
	remote   media.SRTPKey // the peer's key in use
	srtp     *media.SRTP   // nil until keys are agreed
}

// answer applies the caller's offer, with SRTP when the offer and the
// policy call for it, and returns our answer. It shadows leg.answer.
func (c *inCall) answer(offer Description) ([]byte, error) {
	use, err := c.s.srtpAnswer(offer, c.transport)
	if err != nil {
		return nil, err
	}
	if use {
		if err := c.keySRTP(offer); err != nil {
			return nil, err
		}
	}
	return c.leg.answer(offer)
}

// offer returns our offer for an INVITE without SDP: RTP/SAVP with a key
// when the call requires SRTP, else plain. It shadows leg.offer.
func (c *inCall) offer() ([]byte, error) {
	if c.s.requiresSRTP(c.transport) {
		if err := c.offerSRTP(); err != nil {
			return nil, err
		}
	}
	return c.leg.offer()
}

// offerSRTP makes our offers RTP/SAVP with one AES_CM_128_HMAC_SHA1_80
// key, tag 1 (RFC 4568 §7.1.1).
func (c *leg) offerSRTP() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sec.local != nil {
		c.sec.offering, c.sec.secure = true, true
		return nil
	}
	key, err := media.NewSRTPKey(media.AESCM128HMACSHA1_80)
	if err != nil {
		return err
	}
	c.sec = legSRTP{offering: true, secure: true, local: &media.Crypto{Tag: 1, Key: key}}
	return nil
}

// keySRTP takes the first usable a=crypto of an offer (the peer's
// preference) and answers it with the same tag and suite and our own key
// (RFC 4568 §7.1.2). On a re-offer, an unchanged key keeps the contexts
// (and their rollover counters); a new key of the same suite keeps our
// sending side.
func (c *leg) keySRTP(offer Description) error {
	chosen := offer.Crypto[0]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sec.local != nil && c.sec.srtp != nil && c.sec.local.Key.Suite == chosen.Key.Suite {
		c.sec.local.Tag = chosen.Tag
		c.sec.secure = offer.Secure
		if sameKey(c.sec.remote, chosen.Key) {
			return nil
		}
		x, err := c.sec.srtp.WithRemote(chosen.Key)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSRTPPolicy, err)
		}
		c.sec.remote, c.sec.srtp = chosen.Key, x
		c.sess.SetSRTP(x)
		return nil
	}
	key, err := media.NewSRTPKey(chosen.Key.Suite)
	if err != nil {
		return err
	}
	x, err := media.NewSRTP(key, chosen.Key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSRTPPolicy, err)
	}
	c.sec = legSRTP{secure: offer.Secure, local: &media.Crypto{Tag: chosen.Tag, Key: key}, remote: chosen.Key, srtp: x}
	c.sess.SetSRTP(x)
	return nil
}

// applyAnswerSRTP reads the peer's key from its answer to our SRTP offer:
// an a=crypto with our tag and suite (RFC 4568 §7.1.3). An answer to a
// plain offer needs nothing.
func (c *leg) applyAnswerSRTP(ans Description) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sec.offering || c.sec.srtp != nil {
		return nil
	}
	for _, cr := range ans.Crypto {
		if cr.Tag != c.sec.local.Tag || cr.Key.Suite != c.sec.local.Key.Suite {
			continue
		}
		x, err := media.NewSRTP(c.sec.local.Key, cr.Key)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSRTPPolicy, err)
		}
		c.sec.remote, c.sec.srtp = cr.Key, x
		c.sess.SetSRTP(x)
		return nil
	}
	return fmt.Errorf("%w: the answer to our SRTP offer has no a=crypto with tag %d", ErrSRTPPolicy, c.sec.local.Tag)
}

// reofferSRTP applies the SRTP side of an offer inside the call (re-INVITE
// or UPDATE). An SRTP call stays SRTP: a re-offer without a key is
// refused. A plain call takes an RTP/SAVP re-offer unless SRTP is off.
func (c *leg) reofferSRTP(offer Description) error {
	c.mu.Lock()
	active := c.sec.srtp != nil
	c.mu.Unlock()
	switch {
	case active && len(offer.Crypto) == 0:
		return fmt.Errorf("%w: SRTP call re-offered without a usable a=crypto", ErrSRTPPolicy)
	case active:
		return c.keySRTP(offer)
	case offer.Secure && c.s.cfg.SRTP == SRTPOff:
		return fmt.Errorf("%w: RTP/SAVP offered while SRTP is off", ErrSRTPPolicy)
	case offer.Secure && len(offer.Crypto) == 0:
		return fmt.Errorf("%w: RTP/SAVP without a usable a=crypto", ErrSRTPPolicy)
	case offer.Secure:
		return c.keySRTP(offer)
	}
	return nil
}

// sdpSRTP returns what our next SDP says about SRTP.
func (c *leg) sdpSRTP() (secure bool, crypto *media.Crypto) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sec.local == nil || (!c.sec.offering && c.sec.srtp == nil) {
		return false, nil
	}
	cr := *c.sec.local
	return c.sec.secure, &cr
}

func sameKey(a, b media.SRTPKey) bool {
	return a.Suite == b.Suite && a.Master == b.Master && bytes.Equal(a.MKI, b.MKI)
}

package testphone

import (
	"fmt"

	"chorus/media"
)

// SRTP in the test phone (SDES, RFC 4568), with the bridge's own media
// code: with Options.SRTP set, the INVITE offers RTP/SAVP with one
// a=crypto of that suite (tag 1), the answer must carry an a=crypto with
// tag 1 and the same suite, and every RTP packet is protected and checked.
// Only the phone's own early offer does SRTP: a late offer, a re-INVITE or
// an INVITE towards the phone keep the key of the first exchange.

// phoneSRTP is the SRTP state of a phone. Sending and receiving each have
// their own media.SRTP (its methods are for one goroutine).
type phoneSRTP struct {
	local    media.Crypto
	tx, rx   *media.SRTP // nil until the answer is in
	failures int         // received datagrams that failed SRTP checks (under p.mu)
}

// initSRTP makes the phone's key when Options.SRTP asks for SRTP.
func (p *Phone) initSRTP() error {
	if p.opts.SRTP == "" {
		return nil
	}
	suite, ok := media.ParseSRTPSuite(p.opts.SRTP)
	if !ok {
		return fmt.Errorf("testphone: unsupported SRTP suite %q", p.opts.SRTP)
	}
	key, err := media.NewSRTPKey(suite)
	if err != nil {
		return err
	}
	p.srtp = &phoneSRTP{local: media.Crypto{Tag: 1, Key: key}}
	return nil
}

// cryptoAttr is the a=crypto value our SDP carries, "" for plain RTP.
func (p *Phone) cryptoAttr() string {
	if p.srtp == nil {
		return ""
	}
	return p.srtp.local.String()
}

// startSRTP reads the peer's key from its answer (RFC 4568 §7.1.3).
func (p *Phone) startSRTP(rm *remoteMedia) error {
	if p.srtp == nil {
		return nil
	}
	if !rm.secure {
		return fmt.Errorf("testphone: SRTP offered, the answer is not RTP/SAVP")
	}
	for _, v := range rm.crypto {
		c, err := media.ParseCrypto(v)
		if err != nil || c.Tag != p.srtp.local.Tag || c.Key.Suite != p.srtp.local.Key.Suite {
			continue
		}
		tx, err := media.NewSRTP(p.srtp.local.Key, c.Key)
		if err != nil {
			return fmt.Errorf("testphone: %w", err)
		}
		rx, err := media.NewSRTP(p.srtp.local.Key, c.Key)
		if err != nil {
			return fmt.Errorf("testphone: %w", err)
		}
		p.mu.Lock()
		p.srtp.tx, p.srtp.rx = tx, rx
		p.mu.Unlock()
		return nil
	}
	return fmt.Errorf("testphone: the answer has no a=crypto for tag %d %s", p.srtp.local.Tag, p.srtp.local.Key.Suite)
}

// protect returns pkt as it goes on the wire.
func (p *Phone) protect(pkt []byte) ([]byte, error) {
	p.mu.Lock()
	var tx *media.SRTP
	if p.srtp != nil {
		tx = p.srtp.tx
	}
	p.mu.Unlock()
	if tx == nil {
		return pkt, nil
	}
	return tx.Protect(pkt)
}

// unprotect returns a received datagram as RTP, or false when it failed
// SRTP's checks (counted in SRTPFailures).
func (p *Phone) unprotect(b []byte) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srtp == nil {
		return b, true
	}
	if p.srtp.rx == nil {
		p.srtp.failures++
		return nil, false
	}
	out, err := p.srtp.rx.Unprotect(b)
	if err != nil {
		p.srtp.failures++
		return nil, false
	}
	return out, true
}

// SRTPFailures returns how many received datagrams failed SRTP's checks.
func (p *Phone) SRTPFailures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srtp == nil {
		return 0
	}
	return p.srtp.failures
}

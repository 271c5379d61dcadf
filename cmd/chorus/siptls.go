package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"chorus/sip"
)

// SIPSecurity are the TLS and SRTP settings of the SIP side, embedded in
// Config (so its JSON fields sit beside the others).
type SIPSecurity struct {
	// SIPTLSAddr is where SIP over TLS listens; empty: no TLS.
	SIPTLSAddr string `json:"sipTlsAddr"`
	// TLSCert and TLSKey are PEM files; both empty with SIPTLSAddr set: a
	// self-signed certificate is made at start and its fingerprint logged.
	TLSCert string `json:"tlsCert"`
	TLSKey  string `json:"tlsKey"`
	// SRTP is off, optional or required (sip.SRTPPolicy).
	SRTP string `json:"srtp"`

	srtpPolicy sip.SRTPPolicy
}

// addSecurityFlags declares the flags of SIPSecurity with their defaults.
func addSecurityFlags(fs *flag.FlagSet) {
	fs.String("sip-tls-addr", "", "SIP over TLS listen address, e.g. :5061; off by default. Calls over TLS require SRTP (env CHORUS_SIP_TLS_ADDR)")
	fs.String("tls-cert", "", "PEM certificate for SIP over TLS; none: a self-signed one is generated at start and its fingerprint logged (env CHORUS_TLS_CERT)")
	fs.String("tls-key", "", "PEM private key of --tls-cert (env CHORUS_TLS_KEY)")
	fs.String("srtp", sip.SRTPOptional.String(), "SRTP with SDES keys: off (refuse RTP/SAVP offers), optional (answer SAVP with SRTP, AVP plain) or required (refuse plain offers with 488) (env CHORUS_SRTP)")
}

// setSecurityField sets one SIPSecurity flag; other names are ignored.
func (c *SIPSecurity) setSecurityField(name, v string) error {
	switch name {
	case "sip-tls-addr":
		c.SIPTLSAddr = v
	case "tls-cert":
		c.TLSCert = v
	case "tls-key":
		c.TLSKey = v
	case "srtp":
		c.SRTP = v
	}
	return nil
}

// validateSecurity checks SIPSecurity and derives srtpPolicy.
func (c *SIPSecurity) validateSecurity() error {
	var errs []error
	p, err := sip.ParseSRTPPolicy(c.SRTP)
	if err != nil {
		errs = append(errs, err)
	}
	c.srtpPolicy = p
	if c.SIPTLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.SIPTLSAddr); err != nil {
			errs = append(errs, fmt.Errorf("sip-tls-addr %q: %w", c.SIPTLSAddr, err))
		}
		if p == sip.SRTPOff {
			errs = append(errs, errors.New("srtp off contradicts sip-tls-addr: calls over TLS require SRTP"))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	return errors.Join(errs...)
}

// listenSIPTLS starts SIP over TLS when configured, with the given
// certificate or a fresh self-signed one whose fingerprint it logs. It
// returns the bound address, invalid when TLS is off.
func listenSIPTLS(srv *sip.Server, c Config, log *slog.Logger) (netip.AddrPort, error) {
	if c.SIPTLSAddr == "" {
		return netip.AddrPort{}, nil
	}
	var cert tls.Certificate
	var err error
	if c.TLSCert != "" {
		if cert, err = tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return netip.AddrPort{}, fmt.Errorf("tls-cert: %w", err)
		}
	} else {
		hosts := []string{c.publicIP.String(), "127.0.0.1", "::1", "localhost"}
		if cert, err = sip.SelfSignedCert(hosts, time.Now()); err != nil {
			return netip.AddrPort{}, err
		}
		log.Warn("no --tls-cert: generated a self-signed certificate for SIP over TLS; peers must accept it or pin its fingerprint",
			"fingerprint", sip.CertFingerprint(cert))
	}
	return srv.ListenTLS(c.SIPTLSAddr, &tls.Config{Certificates: []tls.Certificate{cert}})
}

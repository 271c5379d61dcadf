// Package sip is Chorus's SIP user agent (RFC 3261), built on
// github.com/emiago/sipgo: it answers dial-ins over UDP and TCP, negotiates
// G.711 audio with SDP offer/answer (RFC 3264, RFC 4566), owns each call's
// RTP session, and turns each answered call into a bridge.Call that joins
// the conference its Request-URI routes to.
//
// It implements bridge.Leg, so the bridge can hang calls up without knowing
// SIP. Errors of the domain map to SIP status codes in one place
// (statusFor).
package sip

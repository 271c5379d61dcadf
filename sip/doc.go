// Package sip is Chorus's SIP user agent (RFC 3261), built on
// github.com/emiago/sipgo: it answers dial-ins over UDP and TCP, negotiates
// Opus (RFC 7587), G.722 or G.711 audio and telephone-event at each codec's
// RTP clock with SDP offer/answer (RFC 3264, RFC 4566; the offer's order
// wins, Config.Codecs filters it and orders our own offers), owns each call's
// RTP session, and turns each answered call into a bridge.Call that joins
// the conference its Request-URI routes to.
//
// It implements bridge.Leg, so the bridge can hang calls up without knowing
// SIP. Errors of the domain map to SIP status codes in one place
// (statusFor).
package sip

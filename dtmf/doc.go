// Package dtmf handles DTMF digits for the conference bridge: RFC 4733
// telephone-event payloads carried in RTP, SIP INFO bodies, and the mapping
// from keys to member actions.
//
// # RTP telephone events
//
// An RFC 4733 event payload is four bytes (see
// https://www.rfc-editor.org/rfc/rfc4733#section-2.3): the event code, an
// end bit, a reserved bit, a 6-bit volume and a 16-bit duration in timestamp
// units. All packets of one event carry the RTP timestamp of the event start;
// the duration grows with each update and the final (end) packet is usually
// sent three times. [Event] decodes and encodes the payload, [Detector] turns
// a stream of such packets into digits, and [Encoder] produces the packets
// for sending one.
//
// Real senders are sloppy, so [Detector] keys a digit on the SSRC and RTP
// timestamp (plus the event code), fires on the first packet it sees of an
// event whatever its kind, never looks at the marker bit (it gets lost and
// some providers never set it), and ignores repeated end packets by their
// timestamp rather than their sequence number (SIPp's captures repeat the
// sequence number of the end packet).
//
// # SIP INFO
//
// Some peers send digits in SIP INFO requests instead (RFC 2976 defines
// INFO but no body format). Two de facto formats are common and both are
// handled by [ParseInfo]: "application/dtmf-relay" ("Signal=5\r\nDuration=160")
// and "application/dtmf" (the body is the digit alone).
//
// # Keys
//
// In the Catapult "interpret_digits" profile each key maps to an [Action] on
// the member ([KeyAction]); in "passthru_digits" digits are only reported.
//
// The package has no dependencies on the rest of the bridge, does not log,
// and holds no package-level mutable state.
package dtmf

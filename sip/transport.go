package sip

import "github.com/emiago/sipgo/sip"

// maxUDPPayload is the largest UDP datagram IPv4 can carry (65535 less
// the IP and UDP headers).
const maxUDPPayload = 65535 - 20 - 8

// init lets sipgo's UDP transport write any datagram IP can carry. By
// default it refuses to write a message within 200 bytes of a 1500-byte
// MTU, and sipgo drops such a response without a word: a 200 OK that
// echoes long To, From and Via headers (RFC 4475 §3.1.1.7) never left. A
// response must go back over the transport its request came on, and one
// larger than the MTU goes as IP fragments (RFC 3261 §18.2.2); only a
// request should move to TCP instead (§18.1.1), and ours are far smaller.
// sip.UDPMTUSize is sipgo's only knob for this; it is set once here,
// before any transport runs, rather than per server, where it would race
// with other sipgo users in the process.
func init() {
	sip.UDPMTUSize = maxUDPPayload + 200 // sipgo refuses len > UDPMTUSize-200
}

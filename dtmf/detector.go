package dtmf

// historySize is how many recent events a Detector remembers, so that late
// packets of an event that is no longer the newest do not fire it again.
const historySize = 8

// Bounds for recognising the next segment of a long-duration event
// (https://www.rfc-editor.org/rfc/rfc4733#section-2.5.1.3): when an event
// outlasts the 16-bit duration field, a compliant sender starts a new segment
// whose timestamp is the old one plus the segment's duration (at most
// 0xFFFF), with the same code and no end bit on the previous segment.
const (
	segmentMinDuration = 0xF000  // previous segment must have come close to full
	segmentMaxStep     = 0x11000 // new timestamp at most this far after the old one
)

// eventKey identifies one event.
type eventKey struct {
	ssrc uint32
	ts   uint32
	code uint8
}

// Detector turns the stream of telephone-event packets of one call into
// digits.
//
// Each digit fires exactly once, keyed on (SSRC, RTP timestamp): it fires on
// the first packet of a new event, whether that is a start, update or end
// packet, so a digit whose start packets were lost is still seen. The marker
// bit is never relied on. Repeated end packets (same timestamp, even the same
// sequence number, as in SIPp's captures) are ignored. A long press (many
// updates with the same timestamp, even with the duration wrapping past
// 65535) fires once, and so does an RFC 4733 §2.5.1.3 long-duration event
// split into segments. An event whose end packet was lost does not block the
// next digit: a new timestamp is a new event. Late packets of the last few
// events do not fire them again.
//
// Two extensions to the (SSRC, timestamp) key cover broken senders: a change
// of event code under the same timestamp is a new digit (as in Asterisk),
// and an older timestamp that matches none of the recent events is a new
// digit (SIPp replays captures whose timestamps are not in order). A sender
// that reuses the timestamp for the same digit twice is seen once.
//
// The zero value is ready to use. A Detector is not safe for concurrent use
// and does not allocate.
type Detector struct {
	recent [historySize]eventKey // ring of recent events; recent[head] is the current one
	n      int                   // number of valid entries in recent
	head   int
	ended  bool   // the current event has seen an end packet
	maxDur uint16 // largest duration seen for the current event
}

// Feed processes one telephone-event packet: ssrc and timestamp from its RTP
// header and the RTP payload. It returns the digit when the packet starts a
// new DTMF event. Packets with a short payload or with a non-DTMF event code
// (16 and above) are ignored.
func (d *Detector) Feed(ssrc, timestamp uint32, payload []byte) (digit rune, ok bool) {
	var e Event
	if e.Unmarshal(payload) != nil {
		return 0, false
	}
	digit, ok = Digit(e.Code)
	if !ok {
		return 0, false
	}
	k := eventKey{ssrc: ssrc, ts: timestamp, code: e.Code}
	for i := range d.n {
		idx := (d.head - i + historySize) % historySize
		if d.recent[idx] != k {
			continue
		}
		if i == 0 { // update or end of the current event
			d.ended = d.ended || e.End
			d.maxDur = max(d.maxDur, e.Duration)
		}
		return 0, false
	}
	cont := d.continues(k)
	d.push(k)
	d.ended = e.End
	d.maxDur = e.Duration
	if cont {
		return 0, false
	}
	return digit, true
}

// continues reports whether k is the next segment of the current
// long-duration event.
func (d *Detector) continues(k eventKey) bool {
	if d.n == 0 || d.ended || d.maxDur < segmentMinDuration {
		return false
	}
	cur := d.recent[d.head]
	if cur.ssrc != k.ssrc || cur.code != k.code {
		return false
	}
	step := k.ts - cur.ts
	return step >= segmentMinDuration && step <= segmentMaxStep
}

// push makes k the current event.
func (d *Detector) push(k eventKey) {
	if d.n > 0 {
		d.head = (d.head + 1) % historySize
	}
	d.recent[d.head] = k
	if d.n < historySize {
		d.n++
	}
}

// Reset forgets all events seen so far, e.g. on a re-INVITE that changes the
// media stream. The next packet fires its digit even if it belongs to an
// event that was already reported.
func (d *Detector) Reset() {
	*d = Detector{}
}

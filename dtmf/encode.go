package dtmf

import (
	"fmt"
	"time"
)

// Defaults used by [EncodeDigit].
const (
	DefaultClockRate = 8000 // telephone-event/8000
	DefaultVolume    = 10   // -10 dBm0, what most senders use
	EndRepeats       = 3    // how often the end packet is sent (RFC 4733 §2.5.1.4)
)

// maxMs bounds durations before any arithmetic, against overflow.
const maxMs = 1 << 24

// Packet is one RTP packet of an outgoing telephone event, as produced by
// [Encoder.Encode]. Every packet of an event carries the same RTP timestamp,
// the one of the event start; each gets its own sequence number, the
// repeated end packets included.
type Packet struct {
	Payload [PayloadSize]byte // RFC 4733 payload
	Marker  bool              // RTP marker bit: set on the first packet only
	End     bool              // the E bit is set in Payload
	Offset  time.Duration     // when to send it, counted from the first packet
}

// Encoder produces the RFC 4733 packets for sending digits. The zero value
// sends at 8000 Hz with volume 0 (the loudest); [EncodeDigit] uses
// [DefaultVolume].
type Encoder struct {
	ClockRate uint32 // RTP clock rate of telephone-event; 0 means 8000
	Volume    uint8  // 0-63, in -dBm0
}

// Encode appends to dst[:0] the packets for sending digit for durationMs
// milliseconds with a packet every ptimeMs milliseconds, and returns the
// extended slice. It does not allocate when dst has room for
// ceil(durationMs/ptimeMs)+3 packets.
//
// The first packet has the marker bit set; updates follow every ptime, each
// with the duration so far (a packet reports the ptime it starts); the
// final duration is then sent three times in end packets, one ptime apart
// (https://www.rfc-editor.org/rfc/rfc4733#section-2.5.1.4). A digit no
// longer than ptime gets one start packet and the end packets.
func (e Encoder) Encode(digit rune, durationMs, ptimeMs int, dst []Packet) ([]Packet, error) {
	code, ok := Code(digit)
	if !ok {
		return dst[:0], fmt.Errorf("encode %q: %w", digit, ErrInvalidDigit)
	}
	if e.Volume > MaxVolume {
		return dst[:0], fmt.Errorf("encode %q volume %d: %w", digit, e.Volume, ErrInvalidVolume)
	}
	rate := int64(e.ClockRate)
	if rate == 0 {
		rate = DefaultClockRate
	}
	if durationMs <= 0 || ptimeMs <= 0 || durationMs > maxMs || ptimeMs > maxMs {
		return dst[:0], fmt.Errorf("encode %q for %d ms every %d ms: %w", digit, durationMs, ptimeMs, ErrInvalidDuration)
	}
	total := int64(durationMs) * rate / 1000
	step := int64(ptimeMs) * rate / 1000
	if total > 0xFFFF || step == 0 {
		return dst[:0], fmt.Errorf("encode %q for %d ms every %d ms at %d Hz: %w", digit, durationMs, ptimeMs, rate, ErrInvalidDuration)
	}
	ptime := time.Duration(ptimeMs) * time.Millisecond
	slots := max(1, (durationMs+ptimeMs-1)/ptimeMs-1) // start and update packets
	dst = dst[:0]
	for i := range slots {
		ev := Event{Code: code, Volume: e.Volume, Duration: uint16(min(int64(i+1)*step, total))}
		dst = append(dst, packet(ev, i == 0, time.Duration(i)*ptime))
	}
	for i := range EndRepeats {
		ev := Event{Code: code, End: true, Volume: e.Volume, Duration: uint16(total)}
		dst = append(dst, packet(ev, false, time.Duration(slots+i)*ptime))
	}
	return dst, nil
}

// packet builds one Packet; ev is valid, so MarshalTo cannot fail.
func packet(ev Event, marker bool, offset time.Duration) Packet {
	p := Packet{Marker: marker, End: ev.End, Offset: offset}
	_, _ = ev.MarshalTo(p.Payload[:])
	return p
}

// EncodeDigit is [Encoder.Encode] at 8000 Hz with [DefaultVolume]:
// EncodeDigit('5', 100, 20, nil) gives a start packet, three updates and
// three end packets with a duration of 800.
func EncodeDigit(digit rune, durationMs, ptimeMs int, dst []Packet) ([]Packet, error) {
	return Encoder{Volume: DefaultVolume}.Encode(digit, durationMs, ptimeMs, dst)
}

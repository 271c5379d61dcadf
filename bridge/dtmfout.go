package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"chorus/dtmf"
	"chorus/media"
)

// DTMF out (POST /calls/{id}/dtmf): digits sent to the far end of a call,
// as RFC 4733 telephone-events when the call negotiated them, else as SIP
// INFO (application/dtmf-relay).
//
// The events go out in the call's own RTP stream, in the slots where its
// audio would go: the mixer (or a parked call's internal room) sends one
// packet per 20 ms tick per member, and while digits are queued a tick's
// packet is the next event packet instead of the audio frame. So events
// never interleave with audio on the session, their packets are 20 ms
// apart (https://www.rfc-editor.org/rfc/rfc4733#section-2.5.1.2), every
// packet of an event carries its start timestamp, the final duration goes
// out three times (§2.5.1.4), and the RTP clock after the event has moved
// by the ticks it took, so the audio that follows is in step.

// MaxDTMFOut bounds the digits of one DTMF out request.
const MaxDTMFOut = 32

// Tone and pause of each digit sent.
const (
	dtmfOutTone     = 100 // ms of each digit's event (RFC 4733 duration)
	dtmfOutGapTicks = 3   // ticks of audio between two digits (60 ms)
)

// ErrNoDTMFPath means the call can carry digits neither as telephone-events
// nor by SIP INFO.
var ErrNoDTMFPath = errors.New("call negotiated no telephone-event and cannot send SIP INFO")

// InfoDigitSender is a Leg that can send a digit by SIP INFO
// (application/dtmf-relay); package sip implements it.
type InfoDigitSender interface {
	SendInfoDigit(ctx context.Context, digit rune, duration time.Duration) error
}

// dtmfSlot is what one tick sends: an event packet, or (event false) the
// tick's audio, between two digits.
type dtmfSlot struct {
	payload [dtmf.PayloadSize]byte
	marker  bool
	event   bool
	advance uint32 // timestamp advance after this packet: the event's ticks on its last packet
}

// dtmfQueue is a member's pending DTMF out, drained one slot per tick.
type dtmfQueue struct {
	mu    sync.Mutex
	slots []dtmfSlot
	next  int
}

// take returns the next slot; false when the queue is drained.
func (q *dtmfQueue) take() (dtmfSlot, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next >= len(q.slots) {
		return dtmfSlot{}, false
	}
	s := q.slots[q.next]
	q.next++
	return s, true
}

// dtmfSlots returns the tick slots that send digits: each digit's event
// packets, then a gap of audio.
func dtmfSlots(digits string, clock int) ([]dtmfSlot, error) {
	var out []dtmfSlot
	var pkts []dtmf.Packet
	// telephone-event runs at the audio codec's RTP clock (RFC 4733
	// §2.1): 48000 for Opus, 8000 for the others.
	enc := dtmf.Encoder{ClockRate: uint32(clock), Volume: dtmf.DefaultVolume}
	for _, d := range digits {
		var err error
		pkts, err = enc.Encode(d, dtmfOutTone, int(TickInterval/time.Millisecond), pkts)
		if err != nil {
			return nil, err
		}
		for i, p := range pkts {
			s := dtmfSlot{payload: p.Payload, marker: p.Marker, event: true}
			if i == len(pkts)-1 {
				s.advance = uint32(len(pkts) * clock / 50)
			}
			out = append(out, s)
		}
		for range dtmfOutGapTicks {
			out = append(out, dtmfSlot{})
		}
	}
	return out, nil
}

// sendDTMF writes this tick's DTMF out packet of the member in place of
// its audio, if digits are queued and the slot is an event; it reports
// whether it did (the tick's audio then stays unsent). The mixer asks for
// every member every tick; with nothing queued it costs one atomic load.
func (m *Member) sendDTMF() (bool, error) {
	q := m.dtmfOut.Load()
	if q == nil {
		return false, nil
	}
	s, ok := q.take()
	if !ok {
		m.dtmfOut.CompareAndSwap(q, nil)
		return false, nil
	}
	if !s.event {
		return false, nil // a pause between digits: the audio goes
	}
	sess := m.epv.Session()
	if sess == nil {
		return true, nil // an in-memory endpoint (tests): nothing to send on
	}
	return true, sess.WriteEvent(s.payload[:], s.marker, s.advance)
}

// queueDTMF appends slots to the member's DTMF out.
func (m *Member) queueDTMF(slots []dtmfSlot) {
	for {
		q := m.dtmfOut.Load()
		if q == nil {
			if m.dtmfOut.CompareAndSwap(nil, &dtmfQueue{slots: slots}) {
				return
			}
			continue
		}
		q.mu.Lock()
		if q.next < len(q.slots) { // still draining: the digits follow
			q.slots = append(q.slots, slots...)
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		m.dtmfOut.CompareAndSwap(q, nil) // drained: start a new queue
	}
}

// SendDTMF sends digits (ValidDigits, at most MaxDTMFOut) to the far end
// of the call: as RFC 4733 events in its RTP stream when it negotiated
// telephone-event, else by SIP INFO, one request per digit, in order. It
// returns once the digits are queued; they play out over about 200 ms
// each.
func (c *Call) SendDTMF(digits string) error {
	if digits == "" || len(digits) > MaxDTMFOut || !ValidDigits(digits) {
		return fmt.Errorf("dtmf to %s: %q: %w", c.id, digits, dtmf.ErrInvalidDigit)
	}
	m, err := c.mediaMember()
	if err != nil {
		return err
	}
	sess := m.epv.Session()
	var p media.Params
	if sess != nil {
		p = sess.Params()
	}
	if p.TelephoneEventPT != 0 {
		slots, err := dtmfSlots(digits, p.Codec.RTPClockRate())
		if err != nil {
			return fmt.Errorf("dtmf to %s: %w", c.id, err)
		}
		m.queueDTMF(slots)
		c.log.Info("dtmf out", "digits", len(digits), "via", "rfc4733")
		return nil
	}
	info, ok := c.Leg().(InfoDigitSender)
	if !ok {
		return fmt.Errorf("dtmf to %s: %w", c.id, ErrNoDTMFPath)
	}
	c.log.Info("dtmf out", "digits", len(digits), "via", "info")
	go func() {
		// One INFO at a time per call, so that two requests' digits do
		// not interleave, each waiting for its answer.
		c.infoMu.Lock()
		defer c.infoMu.Unlock()
		for _, d := range digits {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := info.SendInfoDigit(ctx, d, dtmfOutTone*time.Millisecond)
			cancel()
			if err != nil {
				c.log.Info("dtmf out by INFO failed", "err", err)
				return
			}
		}
	}()
	return nil
}

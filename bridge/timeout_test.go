package bridge

import (
	"net"
	"testing"
	"time"

	"chorus/media"
)

// tickFrom runs n ticks in which only the given peers send.
func (r *room) tickFrom(n int, senders ...*peer) {
	for range n {
		for _, p := range senders {
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
		for _, p := range r.peers {
			p.receive()
		}
	}
}

// direction sets p's session to direction d at the room's clock, as
// signalling (a re-INVITE) would.
func (r *room) direction(p *peer, d media.Direction) {
	p.leg.sess.SetClock(func() time.Time { return r.now })
	p.leg.sess.SetParams(media.Params{Remote: p.conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		Codec: p.codec, TelephoneEventPT: 101, Direction: d})
}

// waitHungUp waits for the asynchronous hang-up of p and returns its cause.
func waitHungUp(t *testing.T, p *peer) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.call.State() != CallCompleted {
		if time.Now().After(deadline) {
			t.Fatal("member not hung up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p.call.Info().Cause
}

// settle gives hang-ups started by the last tick time to run, so that a
// test asserting "not hung up" would see one.
func settle() { time.Sleep(50 * time.Millisecond) }

// TestHoldTimeout: a held call (here inactive) sends and receives nothing,
// so the RTP timeout does not end it; the hold timeout does, counted from
// when the hold began.
func TestHoldTimeout(t *testing.T) {
	r := newRoom(t, Config{RTPTimeout: time.Second, RTPHoldTimeout: 3 * time.Second})
	talker := r.join(media.PCMU, tone(500, -20))
	held := r.join(media.PCMU, nil)
	r.step(10)
	r.direction(held, media.Inactive)
	r.tickFrom(140, talker) // 2.8 s: long past the RTP timeout
	settle()
	if held.call.State() == CallCompleted {
		t.Fatalf("held call ended after 2.8 s on hold: %s", held.call.Info().Cause)
	}
	// A change between held directions does not restart the hold.
	r.direction(held, media.RecvOnly)
	r.tickFrom(60, talker)
	if cause := waitHungUp(t, held); cause != CauseHoldTimeout {
		t.Errorf("cause %q, want %q", cause, CauseHoldTimeout)
	}
	if held.member.Active() {
		t.Error("held member still active")
	}
	if talker.call.State() == CallCompleted {
		t.Error("the talker was hung up")
	}
}

// TestResumeAfterHold: coming off a long silent hold, silence counts from
// the resume, not from the last packet before the hold.
func TestResumeAfterHold(t *testing.T) {
	r := newRoom(t, Config{RTPTimeout: time.Second, RTPHoldTimeout: time.Minute})
	talker := r.join(media.PCMU, tone(500, -20))
	p := r.join(media.PCMU, nil)
	r.step(10)
	r.direction(p, media.SendOnly) // the phone holds: recvonly
	r.tickFrom(150, talker)
	r.direction(p, media.SendRecv)
	r.tickFrom(40, talker) // 0.8 s after the resume, the phone not sending yet
	settle()
	if p.call.State() == CallCompleted {
		t.Fatal("resumed call hung up at once by the RTP timeout")
	}
	r.tickFrom(60, talker)
	if cause := waitHungUp(t, p); cause != CauseRTPTimeout {
		t.Errorf("cause %q, want %q", cause, CauseRTPTimeout)
	}
}

// TestUnprovenTimeout: a call whose far end never sends a packet is hung
// up by the RTP timeout whatever its direction, held ones included.
func TestUnprovenTimeout(t *testing.T) {
	r := newRoom(t, Config{RTPTimeout: time.Second, RTPHoldTimeout: time.Hour})
	talker := r.join(media.PCMU, tone(500, -20))
	mute := r.join(media.PCMU, nil)     // sendrecv, never sends
	listener := r.join(media.PCMU, nil) // offered recvonly (we send only), never sends
	r.direction(listener, media.SendOnly)
	r.tickFrom(110, talker)
	for _, p := range []*peer{mute, listener} {
		if cause := waitHungUp(t, p); cause != CauseRTPTimeout {
			t.Errorf("cause %q, want %q", cause, CauseRTPTimeout)
		}
		if p.leg.sess.Proven() {
			t.Error("a silent peer's address counted as proven")
		}
	}
	if !talker.leg.sess.Proven() || talker.call.State() == CallCompleted {
		t.Error("the talker was not proven or was hung up")
	}
}

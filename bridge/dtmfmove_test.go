package bridge

import (
	"testing"

	"chorus/dtmf"
	"chorus/media"
)

// TestMoveDoesNotRepeatKey: a key that moves a call into a room (an
// application's gather ends on # and adds the call) must not fire again
// in the new room on the RFC 4733 end packets the phone repeats
// (§2.5.1.4), where # means leave. The detector lives on the call, so the
// new member knows the event already.
func TestMoveDoesNotRepeatKey(t *testing.T) {
	r := newRoom(t, Config{})
	r.join(media.PCMU, nil) // someone already in the room
	// Where the call was: digits are the application's there, as in a
	// parked call's room.
	other, err := r.b.CreateConference(ConferenceOptions{UserID: "u-test", From: "+15550001001", Profile: ProfilePassthruDigits})
	if err != nil {
		t.Fatal(err)
	}
	p := r.newPeer(media.PCMU, nil)
	p.call = r.b.NewCall("u-test", "caller", "1001", DirectionIn, p.leg, Callback{})
	p.call.Answered()
	if _, err := other.AddMember(p.call, MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	// '#' as a phone sends it: updates, then the end packet, all under
	// one timestamp; the first packet fires it in the first room.
	var buf [4]byte
	send := func(end bool, dur uint16) {
		n, err := dtmf.Event{Code: 11, End: end, Volume: 10, Duration: dur}.MarshalTo(buf[:])
		if err != nil {
			t.Fatal(err)
		}
		p.sendPayload(101, buf[:n], 0)
	}
	send(false, 160)
	send(false, 320)
	send(true, 800)
	other.mixOnce(r.now)
	// The key moved the call; the phone repeats its end packet twice.
	m, err := r.conf.AddMember(p.call, MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	send(true, 800)
	send(true, 800)
	r.step(3)
	if !m.Active() {
		t.Fatal("the moved caller left the room on the repeated end packets of the key that moved it")
	}
	// A new press of # (a new timestamp) still leaves.
	p.hdr.Timestamp += 1600
	send(false, 160)
	send(true, 800)
	r.step(3)
	deadline := r.now
	for m.Active() && r.now.Sub(deadline) < 100*TickInterval {
		r.step(1)
	}
	if m.Active() {
		t.Fatal("a new # did not leave the room")
	}
}

package bridge

import (
	"math"
	"testing"

	"chorus/media"
)

// TestPhoneHoldNotMixed: a phone that holds the call and plays hold music
// (it goes on sending a loud tone) is not heard in the room; once it
// resumes it is heard again at its level. The hold is visible on the
// member, follows the call into another conference, and the held member
// still hears the room when its direction allows.
func TestPhoneHoldNotMixed(t *testing.T) {
	const music = 8000.0 / 17
	r := newRoom(t, Config{})
	a := r.join(media.PCMU, tone(music, -10)) // the phone that holds
	b := r.join(media.PCMU, nil)              // a listener
	r.join(media.PCMU, tone(8000.0/11, -20))  // the room, which the held phone still hears
	r.step(10)
	heard := func(what string) (atB, atA float64) {
		m := r.mark()
		r.step(50)
		recB, recA := b.rec[m[1]:], a.rec[m[0]:]
		if len(recB) < 40*media.FrameSamples {
			t.Fatalf("%s: the listener got %d samples", what, len(recB))
		}
		return level(recB, music), level(recA, 8000.0/11)
	}
	if got, _ := heard("before"); math.Abs(got+10) > 1 {
		t.Fatalf("before the hold the room hears the phone at %.1f dBFS, want -10", got)
	}

	a.call.SetPhoneHold(true)
	if !a.member.PhoneHold() || !a.member.Info().PhoneHold {
		t.Fatal("the member does not show the phone's hold")
	}
	if a.member.Held() {
		t.Error("a phone's hold set the API's hold")
	}
	r.step(2) // the frames in flight
	got, fromC := heard("during")
	if got > -60 {
		t.Errorf("during the phone's hold the room hears its music at %.1f dBFS, want < -60", got)
	}
	// The session still sends to it (this test's phone is sendrecv): the
	// bridge only stops mixing what it sends.
	if math.Abs(fromC+20) > 1 {
		t.Errorf("the held phone hears the room at %.1f dBFS, want -20", fromC)
	}
	if a.member.Talking() {
		t.Error("the held phone's music opens its noise gate")
	}

	a.call.SetPhoneHold(false)
	r.step(2)
	if got, _ := heard("after"); math.Abs(got+10) > 1 {
		t.Errorf("after the resume the room hears the phone at %.1f dBFS, want -10", got)
	}

	// The hold is the call's: it survives a move to another conference.
	a.call.SetPhoneHold(true)
	other, err := r.b.CreateConference(ConferenceOptions{UserID: "u-test", From: "other"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := other.AddMember(a.call, MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.PhoneHold() {
		t.Error("the phone's hold was lost when the call moved")
	}
}

// TestPhoneHoldEvent: a change of the phone's hold raises a
// conference-member event carrying it; repeating the same state does not.
func TestPhoneHoldEvent(t *testing.T) {
	r := newRoom(t, Config{})
	var evs []Event
	r.b.SetEventSink(sinkFunc(func(ev Event) { evs = append(evs, ev) }))
	a := r.join(media.PCMU, nil)
	evs = nil
	a.call.SetPhoneHold(true)
	a.call.SetPhoneHold(true)
	a.call.SetPhoneHold(false)
	if len(evs) != 2 || evs[0].Type != EventConferenceMember || !evs[0].PhoneHold || evs[1].PhoneHold ||
		evs[0].MemberID != a.member.ID() || evs[0].State != StateActive {
		t.Fatalf("events %+v", evs)
	}
}

type sinkFunc func(Event)

func (f sinkFunc) Publish(ev Event) { f(ev) }

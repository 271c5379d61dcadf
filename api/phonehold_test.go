package api

import (
	"testing"

	"chorus/bridge"
)

// TestMemberPhoneHold: the member JSON shows the phone's own hold as
// phoneHold, apart from hold, and a conference-member event carries it.
func TestMemberPhoneHold(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	mid, call, _ := e.addMember(alice, conf, "")
	var mj memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members/"+mid, &mj)
	if mj.PhoneHold {
		t.Fatalf("a new member shows phoneHold: %+v", mj)
	}
	if mj.Codec != "PCMU" {
		t.Errorf("codec %q, want the call's PCMU", mj.Codec)
	}
	call.SetPhoneHold(true) // what sip does on a sendonly re-INVITE
	r := e.getJSON(alice, "/conferences/"+conf+"/members/"+mid, &mj)
	if !mj.PhoneHold || mj.Hold {
		t.Errorf("held by the phone: %s", r.body)
	}
	e.events.waitFor(t, "conference-member with phoneHold", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConferenceMember && ev.MemberID == mid && ev.PhoneHold
	})
	call.SetPhoneHold(false)
	e.getJSON(alice, "/conferences/"+conf+"/members/"+mid, &mj)
	if mj.PhoneHold {
		t.Error("phoneHold stays after the resume")
	}
}

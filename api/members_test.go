package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

func TestAddAndGetMember(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	call, _ := e.newCall(alice)
	r := e.as(alice, "POST", "/conferences/"+conf+"/members", `{"callId":"`+call.ID()+`","joinTone":"false","leavingTone":"false"}`)
	id := e.mustCreate(r, "/v1/users/u-alice/conferences/"+conf+"/members")
	if !strings.HasPrefix(id, "member-") {
		t.Fatalf("id %q", id)
	}
	g := e.do(&alice, "GET", strings.TrimPrefix(r.header.Get("Location"), e.srv.URL), "")
	var raw map[string]json.RawMessage
	g.decode(t, &raw)
	want := map[string]string{"id": `"` + id + `"`, "state": `"active"`, "hold": "false", "mute": "false",
		"joinTone": "false", "leavingTone": "false", "talkVolume": "0", "receiveVolume": "0", "sensitivity": "0",
		"call": `"` + e.srv.URL + "/v1/users/u-alice/calls/" + call.ID() + `"`}
	for k, v := range want {
		if string(raw[k]) != v {
			t.Errorf("%s = %s, want %s", k, raw[k], v)
		}
	}
	if _, ok := raw["removedTime"]; ok {
		t.Errorf("removedTime on an active member")
	}
	if string(raw["talking"]) != "false" && string(raw["talking"]) != "true" {
		t.Errorf("talking %s", raw["talking"])
	}
	var added string
	_ = json.Unmarshal(raw["addedTime"], &added)
	if _, err := time.Parse("2006-01-02T15:04:05Z", added); err != nil {
		t.Errorf("addedTime %q", added)
	}
	// The member's call resource is GET-able at its URL.
	var u string
	_ = json.Unmarshal(raw["call"], &u)
	cr := e.do(&alice, "GET", strings.TrimPrefix(u, e.srv.URL), "")
	var cj callJSON
	cr.decode(t, &cj)
	if cj.ID != call.ID() || cj.ConferenceID != conf || cj.MemberID != id || cj.State != "active" {
		t.Errorf("call of member: %+v", cj)
	}
	e.events.waitFor(t, "member joined", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConferenceMember && ev.MemberID == id && ev.State == "active" && ev.ActiveMembers == 1
	})
}

func TestAddMemberOptions(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	id, _, _ := e.addMember(alice, conf, `{"callId":"{callId}","joinTone":"true","leavingTone":true,"mute":"true","hold":true}`)
	var m memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members/"+id, &m)
	if !m.JoinTone || !m.LeavingTone || !m.Mute || !m.Hold {
		t.Fatalf("%+v", m)
	}
}

func TestAddMemberErrors(t *testing.T) {
	e := newEnv(t, func(b *bridge.Config, c *Config) {
		b.MaxMembers = 2
		c.AnswerWait = 100 * time.Millisecond
	})
	conf := e.createConf(alice)
	p := "/conferences/" + conf + "/members"
	e.as(alice, "POST", p, `{}`).expectError(t, 400, "missing-property")
	e.as(alice, "POST", p, `{"callId":null}`).expectError(t, 400, "missing-property")
	e.as(alice, "POST", p, `{"callId":" "}`).expectError(t, 400, "blank-property")
	e.as(alice, "POST", p, `{"callId":"c-x","mute":"maybe"}`).expectError(t, 400, "validation-error")
	ae := e.as(alice, "POST", p, `{"callId":"c-unknown"}`).expectError(t, 403, "call-id-not-found")
	if ae.Message != "Call Id not found. callId c-unknown" {
		t.Errorf("message %q", ae.Message)
	}
	ended, _ := e.newCall(alice)
	ended.Ended("NORMAL_CLEARING")
	e.as(alice, "POST", p, `{"callId":"`+ended.ID()+`"}`).expectError(t, 403, "call-invalid-state")

	// A call that keeps ringing: 503 call-unavailable after AnswerWait.
	ringing := e.b.NewCall(alice.ID, "a", "b", bridge.DirectionIn, newLeg(t), bridge.Callback{})
	e.as(alice, "POST", p, `{"callId":"`+ringing.ID()+`"}`).expectError(t, 503, "call-unavailable")

	// Max members.
	e.addMember(alice, conf, "")
	e.addMember(alice, conf, "")
	extra, _ := e.newCall(alice)
	ae = e.as(alice, "POST", p, `{"callId":"`+extra.ID()+`"}`).expectError(t, 403, "conference-max-members")
	if ae.Category != "limit" {
		t.Errorf("category %q", ae.Category)
	}
}

func TestAddMemberWaitsForAnswer(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	ringing := e.b.NewCall(alice.ID, "a", "b", bridge.DirectionIn, newLeg(t), bridge.Callback{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		ringing.Answered()
	}()
	r := e.as(alice, "POST", "/conferences/"+conf+"/members", `{"callId":"`+ringing.ID()+`"}`)
	e.mustCreate(r, "/v1/users/u-alice/conferences/"+conf+"/members")
	if m := ringing.Member(); m == nil || m.Conference().ID() != conf {
		t.Fatalf("not a member")
	}
}

func TestAddMemberMovesAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	a := e.createConf(alice)
	b := e.createConf(alice)
	ma, call, leg := e.addMember(alice, a, "")
	// Same call, same conference again: the same member.
	again := e.mustCreate(e.as(alice, "POST", "/conferences/"+a+"/members", `{"callId":"`+call.ID()+`","mute":true}`),
		"/v1/users/u-alice/conferences/"+a+"/members")
	if again != ma {
		t.Fatalf("re-add made %s, want %s", again, ma)
	}
	var m memberJSON
	e.getJSON(alice, "/conferences/"+a+"/members/"+ma, &m)
	if !m.Mute {
		t.Errorf("re-add did not apply mute")
	}
	// Into another conference: it moves without hanging up.
	mb := e.mustCreate(e.as(alice, "POST", "/conferences/"+b+"/members", `{"callId":"`+call.ID()+`"}`),
		"/v1/users/u-alice/conferences/"+b+"/members")
	e.getJSON(alice, "/conferences/"+a+"/members/"+ma, &m)
	if m.State != "completed" || m.RemovedTime == "" {
		t.Errorf("old member %+v", m)
	}
	m = memberJSON{}
	e.getJSON(alice, "/conferences/"+b+"/members/"+mb, &m)
	if m.State != "active" {
		t.Errorf("new member %+v", m)
	}
	time.Sleep(20 * time.Millisecond)
	if leg.hungUp.Load() != 0 || call.State() != bridge.CallActive {
		t.Errorf("a moved call was hung up")
	}
	var cj callJSON
	e.getJSON(alice, "/calls/"+call.ID(), &cj)
	if cj.ConferenceID != b || cj.MemberID != mb {
		t.Errorf("call after move: %+v", cj)
	}
}

func TestGetMemberNotFound(t *testing.T) {
	e := newEnv(t)
	a := e.createConf(alice)
	b := e.createConf(alice)
	mb, _, _ := e.addMember(alice, b, "")
	e.as(alice, "GET", "/conferences/"+a+"/members/member-nope", "").expectError(t, 404, "conference-member-not-found")
	// A member of another conference is not a member of this one.
	e.as(alice, "GET", "/conferences/"+a+"/members/"+mb, "").expectError(t, 404, "conference-member-not-found")
	e.as(alice, "POST", "/conferences/"+a+"/members/"+mb, `{"mute":true}`).expectError(t, 404, "conference-member-not-found")
	e.as(alice, "POST", "/conferences/"+a+"/members/"+mb+"/audio", `{"sentence":"x"}`).expectError(t, 404, "conference-member-not-found")
}

func TestUpdateMember(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	id, _, leg := e.addMember(alice, conf, "")
	other, _, _ := e.addMember(alice, conf, "")
	p := "/conferences/" + conf + "/members/" + id
	get := func() memberJSON {
		var m memberJSON
		e.getJSON(alice, p, &m)
		return m
	}
	e.as(alice, "POST", p, `{"mute":"true"}`).mustOK(t)
	if !get().Mute {
		t.Fatal("mute not applied")
	}
	e.events.waitFor(t, "member muted", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConferenceMember && ev.MemberID == id && ev.State == "active" && ev.Mute
	})
	e.as(alice, "POST", p, `{"hold":true,"mute":false}`).mustOK(t)
	if m := get(); m.Mute || !m.Hold {
		t.Fatalf("%+v", m)
	}
	// Levels round trip (numbers and numeric strings), each independently.
	e.as(alice, "POST", p, `{"talkVolume":3,"receiveVolume":"-2","sensitivity":"4"}`).mustOK(t)
	if m := get(); m.TalkVolume != 3 || m.ReceiveVolume != -2 || m.Sensitivity != 4 {
		t.Fatalf("%+v", m)
	}
	e.as(alice, "POST", p, `{"receiveVolume":-4}`).mustOK(t)
	if m := get(); m.TalkVolume != 3 || m.ReceiveVolume != -4 || m.Sensitivity != 4 {
		t.Fatalf("%+v", m)
	}
	conference, _ := e.b.Conference(conf)
	bm, _ := conference.Member(id)
	if tv, rv, sv := bm.Levels(); tv != 3 || rv != -4 || sv != 4 {
		t.Fatalf("bridge levels %d %d %d", tv, rv, sv)
	}
	for _, b := range []string{`{"talkVolume":5}`, `{"receiveVolume":-5}`, `{"sensitivity":"9"}`, `{"talkVolume":1.5}`, `{"sensitivity":"x"}`, `{"state":"active"}`, `{"joinTone":"no"}`} {
		e.as(alice, "POST", p, b).expectError(t, 400, "validation-error")
	}
	if m := get(); m.TalkVolume != 3 {
		t.Fatalf("a rejected update changed levels: %+v", m)
	}
	// Tones are accepted (applied where the bridge supports changing them).
	e.as(alice, "POST", p, `{"joinTone":true,"leavingTone":"true"}`).mustOK(t)
	e.as(alice, "POST", p, `{}`).mustOK(t)

	// Removal hangs the call up; the member stays in the list, completed.
	e.as(alice, "POST", p, `{"state":"completed"}`).mustOK(t)
	eventually(t, "hangup", func() bool { return leg.hungUp.Load() == 1 })
	m := get()
	if m.State != "completed" || m.RemovedTime == "" {
		t.Fatalf("%+v", m)
	}
	var list []memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members", &list)
	if len(list) != 2 || list[0].ID != id || list[0].State != "completed" || list[1].ID != other || list[1].State != "active" {
		t.Fatalf("%+v", list)
	}
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+conf, &c)
	if c.State != "active" || c.ActiveMembers != 1 {
		t.Fatalf("%+v", c)
	}
	// A completed member: changes 403, removing again and {} 200.
	e.as(alice, "POST", p, `{"mute":true}`).expectError(t, 403, "member-invalid-state")
	e.as(alice, "POST", p, `{"talkVolume":1}`).expectError(t, 403, "member-invalid-state")
	e.as(alice, "POST", p, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", p, `{}`).mustOK(t)
	if leg.hungUp.Load() != 1 {
		t.Fatalf("hung up %d times", leg.hungUp.Load())
	}
}

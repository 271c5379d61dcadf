package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

func (e *env) getCall(u User, id string) callJSON {
	e.t.Helper()
	var c callJSON
	e.getJSON(u, "/calls/"+id, &c)
	return c
}

func TestCreateCall(t *testing.T) {
	e := newEnv(t)
	r := e.as(alice, "POST", "/calls", `{"from":"+15550001111","to":"sip:alice@127.0.0.1:5070","callbackUrl":"http://app.example/calls","callbackTimeout":"3000","tag":"t9","callTimeout":"30"}`)
	id := e.mustCreate(r, "/v1/users/u-alice/calls")
	if !strings.HasPrefix(id, "c-") {
		t.Fatalf("id %q", id)
	}
	g := e.do(&alice, "GET", strings.TrimPrefix(r.header.Get("Location"), e.srv.URL), "")
	if g.status != 200 {
		t.Fatalf("GET Location: %d", g.status)
	}
	eventually(t, "answer", func() bool { return e.getCall(alice, id).State == "active" })
	var raw map[string]json.RawMessage
	e.getJSON(alice, "/calls/"+id, &raw)
	want := map[string]string{"id": `"` + id + `"`, "direction": `"out"`, "from": `"+15550001111"`,
		"to": `"sip:alice@127.0.0.1:5070"`, "state": `"active"`, "callbackUrl": `"http://app.example/calls"`,
		"callbackTimeout": "3000", "callbackHttpMethod": `"post"`, "tag": `"t9"`, "callTimeout": "30"}
	for k, v := range want {
		if string(raw[k]) != v {
			t.Errorf("%s = %s, want %s", k, raw[k], v)
		}
	}
	for _, k := range []string{"startTime", "activeTime"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	for _, k := range []string{"endTime", "chargeableDuration", "conferenceId", "memberId"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%s on an active call without conference", k)
		}
	}
	e.events.waitFor(t, "answer", func(ev bridge.Event) bool { return ev.Type == bridge.EventAnswer && ev.CallID == id })

	// Hang up.
	e.as(alice, "POST", "/calls/"+id, `{"state":"completed"}`).mustOK(t)
	c := e.getCall(alice, id)
	if c.State != "completed" || c.EndTime == "" || c.ChargeableDuration == nil {
		t.Fatalf("%+v", c)
	}
	leg, _ := e.dialer.legs.Load(id)
	if n := leg.(*fakeLeg).hungUp.Load(); n != 1 {
		t.Fatalf("leg hung up %d times", n)
	}
	e.as(alice, "POST", "/calls/"+id, `{"state":"completed"}`).mustOK(t)
	if n := leg.(*fakeLeg).hungUp.Load(); n != 1 {
		t.Fatalf("leg hung up %d times", n)
	}
}

func TestCreateCallIntoConference(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	// The Catapult flow: dial with conferenceId, then add the member right
	// away, while the call still rings.
	id := e.mustCreate(e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:late@127.0.0.1","conferenceId":"`+conf+`"}`), "/v1/users/u-alice/calls")
	c := e.getCall(alice, id)
	if c.State != "started" || c.ConferenceID != conf || c.Conference != e.srv.URL+"/v1/users/u-alice/conferences/"+conf {
		t.Fatalf("ringing call %+v", c)
	}
	mid := e.mustCreate(e.as(alice, "POST", "/conferences/"+conf+"/members", `{"callId":"`+id+`"}`),
		"/v1/users/u-alice/conferences/"+conf+"/members")
	var members []memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members", &members)
	if len(members) != 1 || members[0].ID != mid || members[0].State != "active" {
		t.Fatalf("members %+v", members)
	}
	c = e.getCall(alice, id)
	if c.State != "active" || c.ConferenceID != conf || c.MemberID != mid {
		t.Fatalf("answered call %+v", c)
	}
	// GET /calls?conferenceId lists it.
	var calls []callJSON
	e.getJSON(alice, "/calls?conferenceId="+conf, &calls)
	if len(calls) != 1 || calls[0].ID != id {
		t.Fatalf("%+v", calls)
	}
}

func TestCreateCallDialledElsewhere(t *testing.T) {
	e := newEnv(t)
	a := e.createConf(alice)
	b := e.createConf(alice)
	id := e.mustCreate(e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:ring@127.0.0.1","callTimeout":1,"conferenceId":"`+a+`"}`), "/v1/users/u-alice/calls")
	e.as(alice, "POST", "/conferences/"+b+"/members", `{"callId":"`+id+`"}`).expectError(t, 403, "invalid-call-conference-id")
	// It never answers: completed with endTime, no charge.
	eventually(t, "ring timeout", func() bool { return e.getCall(alice, id).State == "completed" })
	c := e.getCall(alice, id)
	if c.EndTime == "" || c.ActiveTime != "" || c.ChargeableDuration == nil || *c.ChargeableDuration != 0 {
		t.Fatalf("%+v", c)
	}
}

func TestCreateCallFails(t *testing.T) {
	e := newEnv(t)
	id := e.mustCreate(e.as(alice, "POST", "/calls", `{"from":"+1","to":"sips:busy@127.0.0.1"}`), "/v1/users/u-alice/calls")
	eventually(t, "failure", func() bool { return e.getCall(alice, id).State == "completed" })
	e.events.waitFor(t, "hangup", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventHangup && ev.CallID == id && ev.Cause == "USER_BUSY"
	})
}

func TestCreateCallErrors(t *testing.T) {
	e := newEnv(t)
	done := e.createConf(alice)
	e.as(alice, "POST", "/conferences/"+done, `{"state":"completed"}`).mustOK(t)
	for _, tc := range []struct{ body, code string }{
		{`{"to":"sip:a@127.0.0.1"}`, "missing-property"},
		{`{"from":"+1"}`, "missing-property"},
		{`{"from":"+1","to":null}`, "missing-property"},
		{`{"from":"+1","to":""}`, "validation-error"},
		{`{"from":"+1","to":"+15551234567"}`, "validation-error"},
		{`{"from":"+1","to":"tel:+15551234567"}`, "validation-error"},
		{`{"from":"+1","to":"http://example.com"}`, "validation-error"},
		{`{"from":"+1","to":"sip:"}`, "validation-error"},
		{`{"from":"+1","to":"sip:@host"}`, "validation-error"},
		{`{"from":"+1","to":"sip:a b@host"}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host\r\nX-Evil: 1"}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host\n"}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host\t"}`, "validation-error"},
		{`{"from":"+1","to":"sip:<a@host>"}`, "validation-error"},
		{`{"from":"+1\r\n","to":"sip:a@host"}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host","callTimeout":0}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host","callTimeout":301}`, "validation-error"},
		{`{"from":"+1","to":"sip:a@host","callbackUrl":"nope"}`, "callback-invalid-url"},
		{`{"from":"+1","to":"sip:a@host","callbackHttpMethod":"PATCH"}`, "validation-error"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			e.as(alice, "POST", "/calls", tc.body).expectError(t, 400, tc.code)
		})
	}
	e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:a@127.0.0.1","conferenceId":"`+done+`"}`).expectError(t, 403, "conference-error")
	e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:a@127.0.0.1","conferenceId":"conf-nope"}`).expectError(t, 403, "invalid-call-conference-id")
	if n := len(e.b.Calls(alice.ID)); n != 0 {
		t.Fatalf("invalid requests made %d calls", n)
	}
	// Valid SIP URIs.
	for _, to := range []string{"sip:alice@127.0.0.1:5070", "SIP:bob@example.com", "sips:carol@example.com;transport=tls", "sip:127.0.0.1:5080"} {
		e.mustCreate(e.as(alice, "POST", "/calls", fmt.Sprintf(`{"from":"+1","to":%q}`, to)), "/v1/users/u-alice/calls")
	}
}

func TestCreateCallWithoutDialer(t *testing.T) {
	e := newEnv(t)
	e.b.SetDialer(nil)
	e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:a@127.0.0.1"}`).expectError(t, 503, "call-creation-failure")
}

func TestUpdateCall(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	mid, call, leg := e.addMember(alice, conf, "")
	p := "/calls/" + call.ID()
	e.as(alice, "POST", p, `{}`).mustOK(t)
	for _, b := range []string{`{"state":"transferring"}`, `{"state":7}`} {
		r := e.as(alice, "POST", p, b)
		if r.status != 400 {
			t.Fatalf("%s: %d", b, r.status)
		}
	}
	// Answering an active call is a harmless repeat; rejecting it is too
	// late (both are for calls ringing for their application).
	e.as(alice, "POST", p, `{"state":"active"}`).mustOK(t)
	e.as(alice, "POST", p, `{"state":"rejected"}`).expectError(t, 403, "call-invalid-state")
	if call.State() != bridge.CallActive {
		t.Fatal("call changed")
	}
	e.as(alice, "POST", p, `{"state":"completed"}`).mustOK(t)
	if leg.hungUp.Load() != 1 || call.State() != bridge.CallCompleted {
		t.Fatalf("not hung up")
	}
	var m memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members/"+mid, &m)
	if m.State != "completed" {
		t.Fatalf("member %+v", m)
	}
	e.as(alice, "GET", "/calls/c-nope", "").expectError(t, 404, "call-not-found")
	e.as(alice, "POST", "/calls/c-nope", `{"state":"completed"}`).expectError(t, 404, "call-not-found")
}

func TestListCalls(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	var ids []string
	for i := range 4 {
		c, _ := e.newCall(alice)
		ids = append(ids, c.ID())
		if i < 2 {
			if _, err := mustConf(e, conf).AddMember(c, bridge.MemberOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.newCall(bob)
	ended, _ := e.b.Call(ids[3])
	ended.Ended("NORMAL_CLEARING")

	var list []callJSON
	e.getJSON(alice, "/calls", &list)
	if len(list) != 4 {
		t.Fatalf("%d calls", len(list))
	}
	for i, c := range list {
		if c.ID != ids[3-i] {
			t.Fatalf("not newest first")
		}
	}
	e.getJSON(alice, "/calls?state=completed", &list)
	if len(list) != 1 || list[0].ID != ids[3] {
		t.Fatalf("%+v", list)
	}
	e.getJSON(alice, "/calls?state=active", &list)
	if len(list) != 3 {
		t.Fatalf("%d active", len(list))
	}
	e.getJSON(alice, "/calls?conferenceId="+conf, &list)
	if len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[0] {
		t.Fatalf("%+v", list)
	}
	// A member that left stays listed under its conference.
	first, _ := e.b.Call(ids[0])
	first.Ended("NORMAL_CLEARING")
	e.getJSON(alice, "/calls?conferenceId="+conf, &list)
	if len(list) != 2 {
		t.Fatalf("%d", len(list))
	}
	e.getJSON(alice, "/calls?conferenceId="+conf+"&state=active", &list)
	if len(list) != 1 || list[0].ID != ids[1] {
		t.Fatalf("%+v", list)
	}
	e.getJSON(alice, "/calls?conferenceId=conf-nope", &list)
	if len(list) != 0 {
		t.Fatalf("%+v", list)
	}
	r := e.getJSON(alice, "/calls?size=3", &list)
	if len(list) != 3 || !strings.Contains(r.header.Get("Link"), "page=1") {
		t.Fatalf("%d, Link %q", len(list), r.header.Get("Link"))
	}
	e.getJSON(alice, "/calls?size=3&page=1", &list)
	if len(list) != 1 || list[0].ID != ids[0] {
		t.Fatalf("%+v", list)
	}
	for _, q := range []string{"state=ringing", "size=1001", "page=-2"} {
		e.as(alice, "GET", "/calls?"+q, "").expectError(t, 400, "validation-error")
	}
}

func mustConf(e *env, id string) *bridge.Conference {
	c, ok := e.b.Conference(id)
	if !ok {
		e.t.Fatalf("no conference %s", id)
	}
	return c
}

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

func TestCreateConference(t *testing.T) {
	e := newEnv(t)
	before := time.Now().UTC().Truncate(time.Second)
	r := e.as(alice, "POST", "/conferences", `{"from":"+19195551212","callbackUrl":"http://my.callback.url","callbackTimeout":"2000","fallbackUrl":"http://my.fallback.url","profile":"passthru_digits","tag":"t1","callbackHttpMethod":"get"}`)
	id := e.mustCreate(r, "/v1/users/u-alice/conferences")
	if !strings.HasPrefix(id, "conf-") || len(id) != len("conf-")+23 {
		t.Fatalf("id %q", id)
	}
	// GET-able at once, at exactly the Location.
	g := e.do(&alice, "GET", strings.TrimPrefix(r.header.Get("Location"), e.srv.URL), "")
	if g.status != 200 {
		t.Fatalf("GET Location: %d", g.status)
	}
	var raw map[string]any
	g.decode(t, &raw)
	want := map[string]any{"id": id, "state": "created", "from": "+19195551212", "activeMembers": float64(0),
		"hold": false, "mute": false, "profile": "passthru_digits", "callbackUrl": "http://my.callback.url",
		"callbackHttpMethod": "get", "callbackTimeout": float64(2000), "fallbackUrl": "http://my.fallback.url", "tag": "t1"}
	for k, v := range want {
		if raw[k] != v {
			t.Errorf("%s = %#v, want %#v", k, raw[k], v)
		}
	}
	if _, ok := raw["completedTime"]; ok {
		t.Errorf("completedTime on a created conference")
	}
	ct, err := time.Parse(time.RFC3339, raw["createdTime"].(string))
	if err != nil || !strings.HasSuffix(raw["createdTime"].(string), "Z") || ct.Before(before) || ct.After(time.Now().Add(time.Second)) {
		t.Errorf("createdTime %v", raw["createdTime"])
	}
	e.events.waitFor(t, "conference created", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConference && ev.ConferenceID == id && ev.State == "created" && ev.Tag == "t1"
	})
}

func TestCreateConferenceMinimalLeavesOutUnset(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	var raw map[string]json.RawMessage
	e.getJSON(alice, "/conferences/"+id, &raw)
	for _, k := range []string{"callbackUrl", "callbackHttpMethod", "callbackTimeout", "fallbackUrl", "tag", "completedTime"} {
		if _, ok := raw[k]; ok {
			t.Errorf("never-set %s is present: %s", k, raw[k])
		}
	}
	if string(raw["profile"]) != `"interpret_digits"` || string(raw["hold"]) != "false" || string(raw["activeMembers"]) != "0" {
		t.Errorf("defaults: %v", raw)
	}
	// With only a callbackUrl, the effective method and timeout show.
	e.as(alice, "POST", "/conferences/"+id, `{"callbackUrl":"https://app.example/c"}`).mustOK(t)
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.CallbackHTTPMethod != "post" || c.CallbackTimeout != 10000 {
		t.Errorf("effective callback: %+v", c.callbackJSON)
	}
}

func TestCreateConferenceLocationFollowsHost(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/users/u-alice/conferences", strings.NewReader(`{"from":"+1"}`))
	req.Host = "chorus.example:8443"
	req.SetBasicAuth(alice.Token, alice.Secret)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, "http://chorus.example:8443/v1/users/u-alice/conferences/conf-") {
		t.Fatalf("Location %q", loc)
	}
}

func TestLocationOverTLS(t *testing.T) {
	b := bridge.New(bridge.Config{}, nil, nil)
	srv := httptest.NewTLSServer(New(Config{Users: []User{alice}, Bridge: b}))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/users/u-alice/conferences", strings.NewReader(`{"from":"+1"}`))
	req.SetBasicAuth(alice.Token, alice.Secret)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != 201 || !strings.HasPrefix(loc, "https://"+strings.TrimPrefix(srv.URL, "https://")+"/v1/users/u-alice/conferences/conf-") {
		t.Fatalf("%d Location %q", res.StatusCode, loc)
	}
	res, err = srv.Client().Do(func() *http.Request {
		r, _ := http.NewRequest("GET", loc, nil)
		r.SetBasicAuth(alice.Token, alice.Secret)
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d", loc, res.StatusCode)
	}
}

func TestCreateConferenceErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ body, code string }{
		{`{}`, "missing-property"},
		{`{"from":null}`, "missing-property"},
		{`{"from":"  "}`, "blank-property"},
		{`{"from":"+1 555"}`, "validation-error"},
		{`{"from":"+1","profile":"passthrough_digits"}`, "validation-error"},
		{`{"from":"+1","callbackUrl":"ftp://x"}`, "callback-invalid-url"},
		{`{"from":"+1","callbackUrl":"not a url"}`, "callback-invalid-url"},
		{`{"from":"+1","fallbackUrl":"/relative"}`, "callback-invalid-url"},
		{`{"from":"+1","callbackHttpMethod":"PUT"}`, "validation-error"},
		{`{"from":"+1","callbackTimeout":10001}`, "validation-error"},
		{`{"from":"+1","callbackTimeout":0}`, "validation-error"},
		{`{"from":"+1","callbackTimeout":"-5"}`, "validation-error"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			e.as(alice, "POST", "/conferences", tc.body).expectError(t, 400, tc.code)
		})
	}
	if n := len(e.b.Conferences(alice.ID)); n != 0 {
		t.Fatalf("invalid requests created %d conferences", n)
	}
	// A number as from is its text.
	id := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":15551234}`), "/v1/users/u-alice/conferences")
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.From != "15551234" {
		t.Fatalf("from %q", c.From)
	}
}

func TestCreateConferenceDraining(t *testing.T) {
	e := newEnv(t)
	e.b.Drain()
	e.as(alice, "POST", "/conferences", `{"from":"+1"}`).expectError(t, 503, "service-unavailable")
}

func TestGetConferenceNotFound(t *testing.T) {
	e := newEnv(t)
	ae := e.as(alice, "GET", "/conferences/conf-nope", "").expectError(t, 404, "conference-not-found")
	if ae.Message != "The conference conf-nope could not be found" {
		t.Errorf("message %q", ae.Message)
	}
	e.as(alice, "POST", "/conferences/conf-nope", `{"mute":true}`).expectError(t, 404, "conference-not-found")
	e.as(alice, "POST", "/conferences/conf-nope/audio", `{"sentence":"hi"}`).expectError(t, 404, "conference-not-found")
	e.as(alice, "GET", "/conferences/conf-nope/members", "").expectError(t, 404, "conference-not-found")
	e.as(alice, "POST", "/conferences/conf-nope/members", `{"callId":"c-x"}`).expectError(t, 404, "conference-not-found")
}

func TestUpdateConference(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	e.as(alice, "POST", "/conferences/"+id, `{"mute":true,"hold":true,"callbackUrl":"http://a.example/x","callbackHttpMethod":"GET","callbackTimeout":500,"fallbackUrl":"http://b.example/y","tag":"new"}`).mustOK(t)
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+id, &c)
	if !c.Mute || !c.Hold || c.CallbackURL != "http://a.example/x" || c.CallbackHTTPMethod != "get" ||
		c.CallbackTimeout != 500 || c.FallbackURL != "http://b.example/y" || c.Tag != "new" {
		t.Fatalf("%+v", c)
	}
	conf, _ := e.b.Conference(id)
	if cb := conf.Callback(); cb.Method != "GET" || cb.Timeout != 500*time.Millisecond {
		t.Fatalf("bridge callback %+v", cb)
	}
	// Partial update keeps the rest; "" clears a URL.
	e.as(alice, "POST", "/conferences/"+id, `{"callbackUrl":"","tag":"newer"}`).mustOK(t)
	c = conferenceJSON{}
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.CallbackURL != "" || c.FallbackURL != "http://b.example/y" || c.Tag != "newer" || c.CallbackTimeout != 500 {
		t.Fatalf("%+v", c)
	}
	for _, b := range []string{`{"state":"active"}`, `{"state":"created"}`, `{"state":""}`, `{"callbackUrl":"javascript:x"}`, `{"callbackTimeout":20000}`} {
		r := e.as(alice, "POST", "/conferences/"+id, b)
		if r.status != 400 {
			t.Errorf("%s: %d %s", b, r.status, r.body)
		}
		r.errBody(t)
	}
}

func TestConferenceMuteHoldApplyToMembers(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	m1, _, _ := e.addMember(alice, id, "")
	m2, _, _ := e.addMember(alice, id, `{"callId":"{callId}","mute":false}`)
	e.as(alice, "POST", "/conferences/"+id, `{"mute":"true"}`).mustOK(t)
	var a, b memberJSON
	e.getJSON(alice, "/conferences/"+id+"/members/"+m1, &a)
	e.getJSON(alice, "/conferences/"+id+"/members/"+m2, &b)
	if !a.Mute {
		t.Errorf("member without its own mute follows the conference: %+v", a)
	}
	if b.Mute {
		t.Errorf("member with mute:false set keeps it: %+v", b)
	}
}

func TestConferenceLifecycle(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.State != "created" || c.ActiveMembers != 0 {
		t.Fatalf("%+v", c)
	}
	m1, call1, leg1 := e.addMember(alice, id, "")
	_, _, leg2 := e.addMember(alice, id, "")
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.State != "active" || c.ActiveMembers != 2 {
		t.Fatalf("%+v", c)
	}
	// Terminate: every member completed and hung up.
	e.as(alice, "POST", "/conferences/"+id, `{"state":"completed"}`).mustOK(t)
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.State != "completed" || c.CompletedTime == "" || c.ActiveMembers != 0 {
		t.Fatalf("%+v", c)
	}
	eventually(t, "hangups", func() bool { return leg1.hungUp.Load() == 1 && leg2.hungUp.Load() == 1 })
	if call1.State() != bridge.CallCompleted {
		t.Errorf("call state %s", call1.State())
	}
	var members []memberJSON
	e.getJSON(alice, "/conferences/"+id+"/members", &members)
	if len(members) != 2 || members[0].ID != m1 {
		t.Fatalf("%+v", members)
	}
	for _, m := range members {
		if m.State != "completed" || m.RemovedTime == "" {
			t.Errorf("member %+v", m)
		}
	}
	e.events.waitFor(t, "conference completed", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConference && ev.ConferenceID == id && ev.State == "completed"
	})

	// Completed is final.
	for _, b := range []string{`{"mute":true}`, `{"hold":false}`, `{"tag":"x"}`, `{"callbackUrl":"http://x.example"}`, `{"state":"completed","mute":true}`} {
		ae := e.as(alice, "POST", "/conferences/"+id, b).expectError(t, 403, "conference-error")
		if !strings.Contains(ae.Message, "completed") {
			t.Errorf("message %q", ae.Message)
		}
	}
	// Completing again and {} change nothing: 200.
	e.as(alice, "POST", "/conferences/"+id, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+id, `{}`).mustOK(t)
	// No new members, no audio.
	call, _ := e.newCall(alice)
	e.as(alice, "POST", "/conferences/"+id+"/members", `{"callId":"`+call.ID()+`"}`).expectError(t, 403, "conference-error")
	e.as(alice, "POST", "/conferences/"+id+"/audio", `{"sentence":"hi"}`).expectError(t, 403, "conference-error")
	// Members of a completed conference: changes 403, remove again 200.
	e.as(alice, "POST", "/conferences/"+id+"/members/"+m1, `{"mute":true}`).expectError(t, 403, "conference-error")
	e.as(alice, "POST", "/conferences/"+id+"/members/"+m1, `{"state":"completed"}`).mustOK(t)
}

func TestConferenceCompletesWhenLastMemberLeaves(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	_, call, _ := e.addMember(alice, id, "")
	call.Ended("NORMAL_CLEARING")
	var c conferenceJSON
	e.getJSON(alice, "/conferences/"+id, &c)
	if c.State != "completed" {
		t.Fatalf("%+v", c)
	}
}

func TestListConferences(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for range 5 {
		ids = append(ids, e.createConf(alice))
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	e.createConf(bob)
	e.addMember(alice, ids[1], "")
	e.as(alice, "POST", "/conferences/"+ids[0], `{"state":"completed"}`).mustOK(t)

	var list []conferenceJSON
	r := e.getJSON(alice, "/conferences", &list)
	if len(list) != 5 {
		t.Fatalf("%d conferences", len(list))
	}
	for i, c := range list {
		if c.ID != ids[4-i] {
			t.Fatalf("not newest first: %d is %s", i, c.ID)
		}
	}
	if r.header.Get("Link") != "" {
		t.Errorf("Link on the only page: %q", r.header.Get("Link"))
	}
	for state, want := range map[string]int{"created": 3, "active": 1, "completed": 1} {
		e.getJSON(alice, "/conferences?state="+state, &list)
		if len(list) != want {
			t.Errorf("state=%s: %d, want %d", state, len(list), want)
		}
		for _, c := range list {
			if c.State != state {
				t.Errorf("state=%s lists %s", state, c.State)
			}
		}
	}
	// Paging: size 2 → pages of 2, 2, 1, then empty; Link rel=next.
	var seen []string
	for page := 0; ; page++ {
		r := e.getJSON(alice, fmt.Sprintf("/conferences?size=2&page=%d", page), &list)
		for _, c := range list {
			seen = append(seen, c.ID)
		}
		link := r.header.Get("Link")
		if page < 2 {
			if len(list) != 2 || !strings.Contains(link, fmt.Sprintf("page=%d", page+1)) || !strings.Contains(link, `rel="next"`) ||
				!strings.HasPrefix(link, "<"+e.srv.URL+"/v1/users/u-alice/conferences?") {
				t.Fatalf("page %d: %d items, Link %q", page, len(list), link)
			}
			continue
		}
		if len(list) != 1 || link != "" {
			t.Fatalf("last page %d: %d items, Link %q", page, len(list), link)
		}
		break
	}
	if strings.Join(seen, ",") != strings.Join([]string{ids[4], ids[3], ids[2], ids[1], ids[0]}, ",") {
		t.Fatalf("pages: %v", seen)
	}
	e.getJSON(alice, "/conferences?page=9", &list)
	if list == nil || len(list) != 0 {
		t.Fatalf("page past the end: %v", list)
	}
	for _, q := range []string{"state=done", "page=-1", "page=x", "size=0", "size=1001", "size=abc"} {
		e.as(alice, "GET", "/conferences?"+q, "").expectError(t, 400, "validation-error")
	}
	e.getJSON(alice, "/conferences?size=1000", &list)
}

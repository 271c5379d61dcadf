package api

import (
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

func isGather(reason bridge.GatherReason, digits string) func(bridge.Event) bool {
	return func(ev bridge.Event) bool {
		return ev.Type == bridge.EventGather && ev.Reason == reason && ev.Digits == digits
	}
}

func TestCallMediaValidation(t *testing.T) {
	e := newEnv(t)
	call, _ := e.newCall(alice)
	base := "/calls/" + call.ID()
	for _, tc := range []struct{ path, body, code string }{
		{"/dtmf", `{}`, "missing-property"},
		{"/dtmf", `{"dtmfOut":null}`, "missing-property"},
		{"/dtmf", `{"dtmfOut":""}`, "blank-property"},
		{"/dtmf", `{"dtmfOut":"12x"}`, "validation-error"},
		{"/dtmf", `{"dtmfOut":"1 2"}`, "validation-error"},
		{"/dtmf", `{"dtmfOut":"` + strings.Repeat("1", bridge.MaxDTMFOut+1) + `"}`, "validation-error"},
		{"/dtmf", `{"dtmfOut":true}`, "validation-error"},
		{"/dtmf", `[`, "invalid-json"},
		{"/gather", `{"maxDigits":0}`, "validation-error"},
		{"/gather", `{"maxDigits":31}`, "validation-error"},
		{"/gather", `{"maxDigits":"many"}`, "validation-error"},
		{"/gather", `{"interDigitTimeout":0}`, "validation-error"},
		{"/gather", `{"interDigitTimeout":31}`, "validation-error"},
		{"/gather", `{"interDigitTimeout":"soon"}`, "validation-error"},
		{"/gather", `{"terminatingDigits":"#x"}`, "validation-error"},
		{"/gather", `{"prompt":"enter"}`, "validation-error"},
		{"/gather", `{"prompt":{}}`, "missing-property"},
		{"/gather", `{"prompt":{"sentence":""}}`, "blank-property"},
		{"/gather", `{"prompt":{"sentence":"a","fileUrl":"http://a.example/x.wav"}}`, "validation-error"},
		{"/gather", `{"prompt":{"fileUrl":"ftp://a.example/x.wav"}}`, "validation-error"},
		{"/gather", `{"prompt":{"sentence":"a","bargeable":"perhaps"}}`, "validation-error"},
		{"/audio", `{}`, "missing-property"},
		{"/audio", `{"fileUrl":"x.wav"}`, "validation-error"},
	} {
		r := e.as(alice, "POST", base+tc.path, tc.body)
		if r.status != 400 {
			t.Errorf("POST %s %s: %d %s, want 400 %s", tc.path, tc.body, r.status, r.body, tc.code)
			continue
		}
		if ae := r.errBody(t); ae.Code != tc.code {
			t.Errorf("POST %s %s: code %s, want %s", tc.path, tc.body, ae.Code, tc.code)
		}
	}
	// Lower-case a-d and unknown fields are fine.
	e.as(alice, "POST", base+"/dtmf", `{"dtmfOut":"abcd","other":1}`).mustOK(t)
}

// TestCallMediaCrossUser: bob gets the same 404 for alice's call and
// gather as for ids that do not exist; states other than active are 403.
func TestCallMediaCrossUser(t *testing.T) {
	e := newEnv(t)
	call, _ := e.newCall(alice)
	gid := e.mustCreate(e.as(alice, "POST", "/calls/"+call.ID()+"/gather", `{}`), "/v1/users/"+alice.ID+"/calls/"+call.ID()+"/gather")
	for _, id := range []string{call.ID(), "c-nosuchcall"} {
		for _, rq := range []struct{ method, path, body string }{
			{"POST", "/audio", `{"sentence":"hi"}`},
			{"POST", "/audio", `{"sentence":""}`},
			{"POST", "/dtmf", `{"dtmfOut":"1"}`},
			{"POST", "/gather", `{}`},
			{"GET", "/gather/" + gid, ``},
			{"POST", "/gather/" + gid, `{"state":"completed"}`},
		} {
			e.as(bob, rq.method, "/calls/"+id+rq.path, rq.body).expectError(t, 404, "call-not-found")
		}
	}
	e.as(alice, "GET", "/calls/"+call.ID()+"/gather/gather-nosuch", "").expectError(t, 404, "gather-not-found")
	e.as(alice, "POST", "/calls/"+call.ID()+"/gather/gather-nosuch", `{}`).expectError(t, 404, "gather-not-found")
	var g gatherJSON
	e.getJSON(alice, "/calls/"+call.ID()+"/gather/"+gid, &g)
	if g.State != "created" || g.ID != gid {
		t.Errorf("bob's attempts changed the gather: %+v", g)
	}

	ringing := e.b.NewCall(alice.ID, "sip:a@127.0.0.1", "+1555", bridge.DirectionOut, newLeg(t), bridge.Callback{})
	for _, p := range []string{"/gather", "/dtmf", "/audio"} {
		e.as(alice, "POST", "/calls/"+ringing.ID()+p, `{"dtmfOut":"1","sentence":"hi"}`).expectError(t, 403, "call-invalid-state")
	}
}

// TestGatherLifecycle: digits by INFO (Call.Digit) fill a gather of a call
// in no conference; a second gather replaces the first; a stop request
// completes one; GET shows each.
func TestGatherLifecycle(t *testing.T) {
	e := newEnv(t)
	call, _ := e.newCall(alice)
	base := "/calls/" + call.ID() + "/gather"
	want := "/v1/users/" + alice.ID + "/calls/" + call.ID() + "/gather"
	first := e.mustCreate(e.as(alice, "POST", base, `{"tag":"one"}`), want)
	call.Digit('4')
	second := e.mustCreate(e.as(alice, "POST", base, `{"maxDigits":3,"terminatingDigits":""}`), want)
	ev := e.events.waitFor(t, "replaced", isGather(bridge.GatherReplaced, "4"))
	if ev.GatherID != first || ev.Tag != "one" || ev.CallID != call.ID() {
		t.Errorf("replaced event %+v", ev)
	}
	for _, d := range "12#" {
		call.Digit(d)
	}
	ev = e.events.waitFor(t, "max-digits", isGather(bridge.GatherMaxDigits, "12#"))
	if ev.GatherID != second {
		t.Errorf("max-digits event %+v", ev)
	}
	var g gatherJSON
	e.getJSON(alice, base+"/"+second, &g)
	if g.State != "completed" || g.Reason != "max-digits" || g.Digits != "12#" || g.CompletedTime == "" ||
		!strings.HasSuffix(g.Call, "/calls/"+call.ID()) {
		t.Errorf("gather %+v", g)
	}
	// A digit with no gather running is a dtmf event of the call.
	call.Digit('7')
	e.events.waitFor(t, "dtmf", func(ev bridge.Event) bool { return ev.Type == bridge.EventDTMF && ev.Digit == "7" })

	third := e.mustCreate(e.as(alice, "POST", base, `{}`), want)
	e.as(alice, "POST", base+"/"+third, `{"state":"active"}`).expectError(t, 400, "validation-error")
	e.as(alice, "POST", base+"/"+third, `{}`).mustOK(t)
	e.as(alice, "POST", base+"/"+third, `{"state":"completed"}`).mustOK(t)
	e.events.waitFor(t, "stopped", isGather(bridge.GatherStopped, ""))
	e.as(alice, "POST", base+"/"+third, `{"state":"completed"}`).mustOK(t) // again: stays
	e.getJSON(alice, base+"/"+third, &g)
	if g.Reason != "stopped" {
		t.Errorf("stopped gather %+v", g)
	}
	if info := call.Info(); info.ConferenceID != "" || info.MemberID != "" {
		t.Errorf("a parked call shows conference %q member %q", info.ConferenceID, info.MemberID)
	}
}

// TestGatherPrompt: with bargeable false, a digit keyed while the prompt
// is pending or playing is dropped; with bargeable true (the default) it
// cuts the prompt short and counts.
func TestGatherPrompt(t *testing.T) {
	e := newEnv(t)
	e.audio.ms = 300 // the prompt: the first key lands in it, the second long after
	call, _ := e.newCall(alice)
	base := "/calls/" + call.ID() + "/gather"
	want := "/v1/users/" + alice.ID + "/calls/" + call.ID() + "/gather"
	e.mustCreate(e.as(alice, "POST", base, `{"prompt":{"sentence":"enter your pin","bargeable":false}}`), want)
	call.Digit('1') // during the prompt: dropped
	time.Sleep(2 * time.Second)
	call.Digit('2')
	call.Digit('#')
	e.events.waitFor(t, "after prompt", isGather(bridge.GatherTerminatingDigit, "2"))

	e.mustCreate(e.as(alice, "POST", base, `{"prompt":{"fileUrl":"http://a.example/slow.wav"}}`), want)
	call.Digit('5') // barges in while the prompt is still being fetched
	call.Digit('#')
	e.events.waitFor(t, "barge", isGather(bridge.GatherTerminatingDigit, "5"))
}

// TestGatherEventShape: the gather event as an application receives it.
func TestGatherEventShape(t *testing.T) {
	d := NewDispatcher(DispatcherConfig{BaseURL: "http://127.0.0.1:8080/"})
	at := time.Date(2013, 7, 12, 20, 53, 11, 646_000_000, time.UTC)
	ev := bridge.Event{Type: bridge.EventGather, UserID: "u-1", CallID: "c-1", GatherID: "gather-1", State: "completed",
		Digits: "123", Reason: bridge.GatherTerminatingDigit, Time: at, Tag: "pin"}
	want := `{"eventType":"gather","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","gatherId":"gather-1",` +
		`"gatherUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1/gather/gather-1","state":"completed","digits":"123",` +
		`"reason":"terminating-digit","time":"2013-07-12T20:53:11.646Z","tag":"pin"}`
	if got := string(d.eventPayload(ev, bridge.Callback{}).json()); got != want {
		t.Errorf("gather event\n got %s\nwant %s", got, want)
	}
	// No digits: still present, empty (an application reads it).
	ev.Digits, ev.Reason, ev.Tag = "", bridge.GatherInterDigitTimeout, ""
	if got := string(d.eventPayload(ev, bridge.Callback{}).json()); !strings.Contains(got, `"digits":""`) {
		t.Errorf("gather event without digits: %s", got)
	}
}

package main

// End-to-end tests of call-level media (issue 13): audio to one call,
// gather and DTMF out, on calls in a room (phones that dialled in) and on a
// dialled call in no room (testphone.Callee as the far end). Audio is
// checked by content, digits by what the far end's RTP or INFO carried.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// callRig is a dialled call to a Callee that is in no conference.
type callRig struct {
	*audioRig
	callee   *testphone.Callee
	callPath string // /calls/{id}
}

// newCallRig starts Chorus with a room of nPhones phones (for the file
// server and clients; nPhones may be 0) and dials a Callee with no
// conferenceId: the answered call is in no room.
func newCallRig(t *testing.T, rtp, from string, opts testphone.CalleeOptions) *callRig {
	t.Helper()
	rg := newAudioRig(t, rtp, from, 0)
	callee, err := testphone.NewCallee(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(callee.Close)
	resp, body := rg.alice.do("POST", "/calls", map[string]any{"from": from, "to": callee.URI("callee"),
		"callbackUrl": rg.callURL, "tag": "call-tag"})
	if resp.StatusCode != 201 {
		t.Fatalf("dial: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	cr := &callRig{audioRig: rg, callee: callee, callPath: loc[strings.Index(loc, "/calls/"):]}
	select {
	case <-callee.Answered():
	case <-time.After(10 * time.Second):
		t.Fatal("the callee was never called")
	}
	cr.waitState(t, "active")
	return cr
}

func (cr *callRig) waitState(t *testing.T, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := cr.alice.do("GET", cr.callPath, nil)
		var call map[string]any
		_ = json.Unmarshal(body, &call)
		if call["state"] == want {
			return call
		}
		if time.Now().After(deadline) {
			t.Fatalf("call never %s: %s", want, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post sends body to the call's path+sub and wants status want.
func (cr *callRig) post(t *testing.T, sub string, body any, want int) (loc string) {
	t.Helper()
	c := cr.alice
	c.t = t
	resp, b := c.do("POST", cr.callPath+sub, body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s %v: %d %s, want %d", sub, body, resp.StatusCode, b, want)
	}
	return resp.Header.Get("Location")
}

// calleeHears polls until the callee hears freqHz in its latest 100 ms.
func calleeHears(t *testing.T, c *testphone.Callee, freqHz float64, mark int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := c.Mark(); m-mark >= audioWindow && maxLevel(c.RecordingSince(m-audioWindow), freqHz) > audioOn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the callee never heard %v Hz", freqHz)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatherEv matches a gather event with reason and digits.
func gatherEv(reason, digits string) func(map[string]any) bool {
	return func(ev map[string]any) bool {
		return ev["eventType"] == "gather" && ev["reason"] == reason && ev["digits"] == digits
	}
}

// TestCallAudioToMemberCall: a file posted to the call of one member of a
// room is heard by that caller only, with playback events.
func TestCallAudioToMemberCall(t *testing.T) {
	rg := newAudioRig(t, "32000-32099", "+15557772000", 2)
	url := rg.serveFile("/tone.wav", "audio/wav", audioWAV(8000, 1, 1000, audioFileLevel, 1500*time.Millisecond))
	marks := rg.marks()
	rg.audio(t, "/calls/"+rg.calls[0]+"/audio", map[string]any{"fileUrl": url, "tag": "to-a"}, 200)
	rg.events.wait(t, "playback started", 5*time.Second, audioEv("playback", "started", "to-a"))
	rg.events.wait(t, "playback done", 10*time.Second, audioEv("playback", "done", "to-a"))
	recs := rg.since(t, marks, 2*time.Second)
	checkHears(t, "the call's caller", recs[0], 1000, 1500*time.Millisecond)
	checkSilent(t, "the other member", recs[1], 1000)
	// Another user's call: the same 404 as an unknown id.
	bob := client{t: t, base: strings.Replace(rg.alice.base, "u-alice", "u-bob", 1), token: "bob-token", secret: "bob-secret"}
	for _, p := range []string{"/calls/" + rg.calls[0], "/calls/c-nosuchcall"} {
		for _, sub := range []string{"/audio", "/dtmf", "/gather"} {
			resp, body := bob.do("POST", p+sub, map[string]any{"sentence": "hi", "dtmfOut": "1"})
			if resp.StatusCode != 404 || !strings.Contains(string(body), "call-not-found") {
				t.Errorf("bob POST %s%s: %d %s, want 404 call-not-found", p, sub, resp.StatusCode, body)
			}
		}
	}
}

// TestGatherMemberCall: a gather on a member's call collects "123#" sent
// by RFC 4733 and then by SIP INFO (terminating-digit, digits 123), and the
// room's keypad map does not act on them meanwhile; maxDigits ends one.
func TestGatherMemberCall(t *testing.T) {
	rg := newAudioRig(t, "32100-32199", "+15557772100", 1)
	phone := rg.phones[0]
	gpath := "/calls/" + rg.calls[0] + "/gather"
	for _, via := range []string{"rfc4733", "info"} {
		before := rg.events.count(gatherEv("terminating-digit", "123"))
		resp, body := rg.alice.do("POST", gpath, map[string]any{"maxDigits": 10, "tag": "pin-" + via})
		if resp.StatusCode != 201 {
			t.Fatalf("gather: %d %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		for _, d := range "123#" {
			var err error
			if via == "info" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err = phone.SendInfo(ctx, d)
				cancel()
			} else {
				err = phone.SendDTMF(d)
			}
			if err != nil {
				t.Fatalf("%s %c: %v", via, d, err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for rg.events.count(gatherEv("terminating-digit", "123")) == before {
			if time.Now().After(deadline) {
				rg.events.wait(t, "gather via "+via, 0, gatherEv("terminating-digit", "123"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, body = rg.alice.do("GET", loc[strings.Index(loc, "/calls/"):], nil)
		var g map[string]any
		_ = json.Unmarshal(body, &g)
		if g["state"] != "completed" || g["digits"] != "123" || g["reason"] != "terminating-digit" || g["tag"] != "pin-"+via {
			t.Errorf("gather via %s: %s", via, body)
		}
	}
	// The keys did not change the member's talk volume (1, 2, 3 would).
	_, body := rg.alice.do("GET", "/conferences/"+rg.confID+"/members/"+rg.members[0], nil)
	if !strings.Contains(string(body), `"talkVolume":0`) {
		t.Errorf("keypad map acted on gathered digits: %s", body)
	}
	rg.audio(t, gpath, map[string]any{"maxDigits": "2", "terminatingDigits": ""}, 201)
	for _, d := range "987" {
		if err := phone.SendDTMF(d); err != nil {
			t.Fatal(err)
		}
	}
	rg.events.wait(t, "gather max-digits", 10*time.Second, gatherEv("max-digits", "98"))
}

// TestCallMediaDialledCall: a dialled call in no room hears a file and a
// sentence posted to it, sends "12#" to the far end as RFC 4733 events
// (each exactly once, in order, with three end packets), gathers digits the
// far end keys
// (terminating digit, inter-digit timeout), then joins a room and hears
// it; a gather running when the call hangs up ends with hung-up.
func TestCallMediaDialledCall(t *testing.T) {
	cr := newCallRig(t, "32200-32299", "+15557772200", testphone.CalleeOptions{})
	ev := cr.callEvents
	url := cr.serveFile("/tone.wav", "audio/wav", audioWAV(8000, 1, 1000, audioFileLevel, 1500*time.Millisecond))

	mark := cr.callee.Mark()
	cr.post(t, "/audio", map[string]any{"fileUrl": url, "tag": "hello"}, 200)
	ev.wait(t, "playback started", 5*time.Second, audioEv("playback", "started", "hello"))
	calleeHears(t, cr.callee, 1000, mark)
	ev.wait(t, "playback done", 10*time.Second, audioEv("playback", "done", "hello"))
	checkHears(t, "the callee", cr.callee.RecordingSince(mark), 1000, 1500*time.Millisecond)
	mark = cr.callee.Mark()
	cr.post(t, "/audio", map[string]any{"sentence": "Please enter your PIN.", "tag": "speak"}, 200)
	ev.wait(t, "speak done", 15*time.Second, audioEv("speak", "done", "speak"))
	time.Sleep(200 * time.Millisecond) // the last frames in flight
	if rms, dur := speechIn(cr.callee.RecordingSince(mark)); rms <= audioSpeechRMS || dur < 500*time.Millisecond {
		t.Errorf("the callee heard speech at %.1f dBFS RMS for %v", rms, dur)
	}
	_, call := cr.alice.do("GET", cr.callPath, nil)
	if strings.Contains(string(call), "conferenceId") {
		t.Errorf("a call in no room shows a conference: %s", call)
	}

	cr.post(t, "/dtmf", map[string]any{"dtmfOut": "12#"}, 200)
	deadline := time.Now().Add(10 * time.Second)
	for len(cr.callee.Events()) < 3 || cr.callee.Events()[2].Ends < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("callee got events %+v", cr.callee.Events())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a stray fourth event would be in by now
	evs := cr.callee.Events()
	var got string
	for _, e := range evs {
		got += string(e.Digit)
		if e.Ends != 3 || e.Packets != 7 {
			t.Errorf("event %c: %d packets, %d end packets; want 7 and 3", e.Digit, e.Packets, e.Ends)
		}
	}
	if got != "12#" {
		t.Errorf("callee detected %q, want 12#", got)
	}
	if n := len(cr.callee.InfoDigits()); n != 0 {
		t.Errorf("%d INFO digits with telephone-event negotiated", n)
	}

	loc := cr.post(t, "/gather", map[string]any{"tag": "g1"}, 201)
	cr.callee.SendDTMF("123#")
	_, g := ev.wait(t, "gather", 10*time.Second, gatherEv("terminating-digit", "123"))
	if g["tag"] != "g1" || !strings.HasSuffix(fmt.Sprint(loc), fmt.Sprint(g["gatherId"])) {
		t.Errorf("gather event %v for %s", g, loc)
	}

	start := time.Now()
	cr.post(t, "/gather", map[string]any{"interDigitTimeout": 1, "terminatingDigits": "*"}, 201)
	cr.callee.SendDTMF("45")
	ev.wait(t, "gather inter-digit-timeout", 10*time.Second, gatherEv("inter-digit-timeout", "45"))
	if d := time.Since(start); d < time.Second {
		t.Errorf("inter-digit timeout after %v, want at least 1 s", d)
	}

	// The parked call joins a room without a second answer, and hears it.
	callID := cr.callPath[strings.LastIndex(cr.callPath, "/")+1:]
	resp, body := cr.alice.do("POST", "/conferences/"+cr.confID+"/members", map[string]any{"callId": callID})
	if resp.StatusCode != 201 {
		t.Fatalf("add the parked call: %d %s", resp.StatusCode, body)
	}
	if call := cr.waitState(t, "active"); call["conferenceId"] != cr.confID {
		t.Errorf("call after joining: %v", call)
	}
	mark = cr.callee.Mark()
	cr.roomAudio(t, map[string]any{"fileUrl": url, "tag": "room"})
	calleeHears(t, cr.callee, 1000, mark)

	cr.post(t, "/gather", map[string]any{}, 201)
	cr.post(t, "", map[string]any{"state": "completed"}, 200)
	ev.wait(t, "gather hung-up", 10*time.Second, gatherEv("hung-up", ""))
	ev.wait(t, "hangup", 10*time.Second, func(e map[string]any) bool { return e["eventType"] == "hangup" })
	cr.post(t, "/gather", map[string]any{}, 403)
	cr.post(t, "/dtmf", map[string]any{"dtmfOut": "1"}, 403)
}

// TestCallDTMFOutByInfo: a callee that negotiated no telephone-event gets
// "12#" as three SIP INFO requests, in order, and no RFC 4733 packet.
func TestCallDTMFOutByInfo(t *testing.T) {
	cr := newCallRig(t, "32300-32399", "+15557772300", testphone.CalleeOptions{NoTelephoneEvent: true})
	cr.post(t, "/dtmf", map[string]any{"dtmfOut": "12#"}, 200)
	deadline := time.Now().Add(10 * time.Second)
	for len(cr.callee.InfoDigits()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("callee got INFO digits %q", string(cr.callee.InfoDigits()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := string(cr.callee.InfoDigits()); got != "12#" {
		t.Errorf("INFO digits %q, want 12#", got)
	}
	if n := len(cr.callee.Events()); n != 0 {
		t.Errorf("%d RFC 4733 events without telephone-event", n)
	}
	for _, body := range []string{`{}`, `{"dtmfOut":""}`, `{"dtmfOut":"12x"}`, `{"dtmfOut":"` + strings.Repeat("1", 33) + `"}`, `{"dtmfOut":true}`} {
		var v any
		_ = json.Unmarshal([]byte(body), &v)
		cr.post(t, "/dtmf", v, 400)
	}
	cr.post(t, "", map[string]any{"state": "completed"}, 200)
	select {
	case <-cr.callee.Ended():
	case <-time.After(10 * time.Second):
		t.Error("the callee got no BYE")
	}
}

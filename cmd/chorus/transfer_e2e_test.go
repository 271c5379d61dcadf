package main

// End-to-end tests of call transfer (issue 13; Catapult's POST /calls/{id}
// {"state":"transferring","transferTo"}): the whole binary in-process,
// test phones over loopback SIP/RTP, audio checked by content.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// TestTransferByRefer: a caller whose INVITE allows REFER is transferred
// by REFER (RFC 3515): the API answers 200 with the call itself as
// Location, the phone gets the REFER with the target, our answer to its
// NOTIFY is 200, and its BYE ends the call; the application gets a
// transferring event (status refer) and then the hangup. Bad requests
// are refused before anything reaches the phone.
func TestTransferByRefer(t *testing.T) {
	rg := newAppRig(t, "33500-33599", "+15558880001", true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	caller, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: rg.number, AcceptRefer: true,
		Source: audiotest.ToneSource(600, -15, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caller.Close)
	callID := rg.incoming(t)
	rg.events.wait(t, "answer", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "answer" && ev["callId"] == callID
	})

	for _, c := range []struct {
		body   map[string]any
		status int
		want   string
	}{
		{map[string]any{"state": "transferring"}, 400, "transferTo"},
		{map[string]any{"state": "transferring", "transferTo": "+15550001111"}, 400, "SIP URI"},
		{map[string]any{"state": "transferring", "transferTo": 7}, 400, "transferTo"},
		{map[string]any{"state": "transferring", "transferTo": "sip:x@10.1.2.3"}, 400, "transferTo"},
		{map[string]any{"state": "transferring", "transferTo": "sip:x@127.0.0.1:5099", "transferCallerId": "a b"}, 400, "transferCallerId"},
	} {
		resp, body := rg.alice.do("POST", "/calls/"+callID, c.body)
		if resp.StatusCode != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("%v: %d %s, want %d mentioning %s", c.body, resp.StatusCode, body, c.status, c.want)
		}
	}
	select {
	case to := <-caller.Referred():
		t.Fatalf("a refused transfer reached the phone: REFER to %s", to)
	default:
	}

	const target = "sip:+15550009999@127.0.0.1:5099"
	resp, body := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "transferring", "transferTo": target})
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Header.Get("Location"), "/calls/"+callID) {
		t.Fatalf("transfer: %d %s, Location %q", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	select {
	case to := <-caller.Referred():
		if to != "<"+target+">" {
			t.Errorf("Refer-To %q, want <%s>", to, target)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the phone got no REFER")
	}
	select {
	case <-caller.Ended():
	case <-time.After(10 * time.Second):
		t.Fatal("the transferred phone never hung up")
	}
	_, ev := rg.events.wait(t, "transferring", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "transferring" && ev["callId"] == callID
	})
	if ev["to"] != target || ev["status"] != "refer" || ev["state"] != "transferring" {
		t.Errorf("transferring event %v", ev)
	}
	rg.events.wait(t, "hangup", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "hangup" && ev["callId"] == callID
	})
	if s := caller.NotifyStatus(); s != 200 {
		t.Errorf("our answer to the phone's NOTIFY: %d", s)
	}
	// An ended call is not transferred.
	if resp, _ := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "transferring", "transferTo": target}); resp.StatusCode != 403 {
		t.Errorf("transfer of an ended call: %d", resp.StatusCode)
	}
}

// TestTransferByNewCall: a caller whose INVITE does not allow REFER is
// transferred by a new outbound call, bridged to it once answered. The
// target is a conference on a second Chorus where a member sends
// 1000 Hz: the caller (600 Hz) hears the member, and the member the
// caller, through the bridged pair. The API answers 201 with the new
// call as Location, the caller's call shows no conference, a call in a
// conference is refused, and when the caller hangs up the new call ends
// too.
func TestTransferByNewCall(t *testing.T) {
	rg := newAppRig(t, "33600-33699", "+15558880002", true)
	// The target: a room on a second Chorus (the policy refuses a call
	// to this bridge's own listeners), where a member sends 1000 Hz.
	far := startChorus(t, "33700-33799")
	farAlice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", far.HTTP), token: "alice-token", secret: "alice-secret"}
	if resp, body := farAlice.do("POST", "/conferences", map[string]any{"from": "+15558880099"}); resp.StatusCode != 201 {
		t.Fatalf("far conference: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	member, err := testphone.Dial(ctx, testphone.Options{Target: far.SIPUDP.String(), User: "+15558880099",
		Source: audiotest.ToneSource(1000, -15, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	// A member of a conference on this Chorus, whose call is refused.
	confID := rg.create("/conferences", map[string]any{"from": "+15558880098"})
	local, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: "+15558880098"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	caller, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: rg.number,
		Source: audiotest.ToneSource(600, -15, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caller.Close)
	callID := rg.incoming(t)
	rg.events.wait(t, "answer", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "answer" && ev["callId"] == callID
	})

	target := "sip:+15558880099@" + far.SIPUDP.String()
	resp, body := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "transferring", "transferTo": target,
		"transferCallerId": "+15558880002"})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 201 || !strings.Contains(loc, "/calls/c-") || strings.HasSuffix(loc, "/calls/"+callID) {
		t.Fatalf("transfer: %d %s, Location %q", resp.StatusCode, body, loc)
	}
	newID := loc[strings.LastIndex(loc, "/")+1:]
	_, ev := rg.events.wait(t, "transferring", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "transferring" && ev["callId"] == callID
	})
	if ev["to"] != target || ev["status"] != "dial" {
		t.Errorf("transferring event %v", ev)
	}
	rg.events.wait(t, "answer of the new call", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "answer" && ev["callId"] == newID
	})
	hears(t, caller, 1000)
	hears(t, member, 600)
	_, body = rg.alice.do("GET", "/calls/"+callID, nil)
	if strings.Contains(string(body), "conferenceId") || !strings.Contains(string(body), `"state":"active"`) {
		t.Errorf("the transferred call: %s", body)
	}
	_, body = rg.alice.do("GET", "/calls/"+newID, nil)
	if !strings.Contains(string(body), `"from":"+15558880002"`) || !strings.Contains(string(body), `"direction":"out"`) {
		t.Errorf("the new call: %s", body)
	}
	// A bridged call is not transferred again, nor is a conference's
	// member.
	if resp, body := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "transferring", "transferTo": target}); resp.StatusCode != 403 {
		t.Errorf("second transfer: %d %s", resp.StatusCode, body)
	}
	_, body = rg.alice.do("GET", "/conferences/"+confID+"/members", nil)
	if i := strings.Index(string(body), "/calls/c-"); i < 0 {
		t.Fatalf("members: %s", body)
	} else {
		memberCall := string(body)[i+len("/calls/"):]
		memberCall = memberCall[:strings.IndexByte(memberCall, '"')]
		if resp, body := rg.alice.do("POST", "/calls/"+memberCall, map[string]any{"state": "transferring", "transferTo": target}); resp.StatusCode != 403 ||
			!strings.Contains(string(body), "call-in-conference") {
			t.Errorf("transfer of a member's call: %d %s", resp.StatusCode, body)
		}
	}

	// The caller hangs up: the new call ends with it.
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	if err := caller.Hangup(hctx); err != nil {
		t.Fatal(err)
	}
	rg.events.wait(t, "hangup of the new call", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "hangup" && ev["callId"] == newID
	})
}

package main

// End-to-end tests of applications (issue 13; spec §5 "How a call becomes
// a member", inbound): the whole binary in-process, an application as a
// local HTTP server that receives the events, test phones dialling the
// application's number over loopback SIP/RTP. Audio is checked by content
// (Goertzel).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// appRig is a running Chorus with Alice's application on a number.
type appRig struct {
	r      ready
	alice  client
	events *audioEvents
	appID  string
	number string
}

// newAppRig starts Chorus (extra flags appended) and makes Alice an
// application (autoAnswer as given) whose incomingCallUrl is a local
// event recorder, with number assigned to it.
func newAppRig(t *testing.T, rtp, number string, autoAnswer bool, extra ...string) *appRig {
	t.Helper()
	events := &audioEvents{}
	evSrv := newTargetServer(events)
	t.Cleanup(evSrv.Close)
	r := startChorusArgs(t, rtp, append([]string{"--user", "u-bob:bob-token:bob-secret", "--target-allow", "127.0.0.1/32"}, extra...)...)
	rg := &appRig{r: r, events: events, number: number,
		alice: client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}}
	rg.appID = rg.create("/applications", map[string]any{"name": "pin", "incomingCallUrl": evSrv.URL + "/app", "autoAnswer": autoAnswer})
	rg.create("/phoneNumbers", map[string]any{"number": number, "applicationId": rg.appID})
	return rg
}

// create POSTs a resource and returns the id of its Location.
func (rg *appRig) create(path string, body map[string]any) string {
	rg.alice.t.Helper()
	resp, b := rg.alice.do("POST", path, body)
	if resp.StatusCode != 201 {
		rg.alice.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	loc := resp.Header.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

// dialResult is what a phone dialling in the background got.
type dialResult struct {
	p   *testphone.Phone
	err error
}

// dial calls the number in the background: the call rings until the
// application decides.
func (rg *appRig) dial(t *testing.T, tone float64) <-chan dialResult {
	ch := make(chan dialResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: rg.number,
			Source: audiotest.ToneSource(tone, -15, 8000)})
		if p != nil {
			t.Cleanup(p.Close)
		}
		ch <- dialResult{p, err}
	}()
	return ch
}

// incoming waits for the incomingcall event and checks its fields.
func (rg *appRig) incoming(t *testing.T) string {
	t.Helper()
	_, ev := rg.events.wait(t, "incomingcall", 10*time.Second, func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" })
	callID, _ := ev["callId"].(string)
	if !strings.HasPrefix(callID, "c-") || ev["applicationId"] != rg.appID || ev["to"] != rg.number ||
		ev["callState"] != "active" || !strings.HasSuffix(fmt.Sprint(ev["callUri"]), "/v1/users/u-alice/calls/"+callID) ||
		ev["from"] == nil || ev["time"] == nil {
		t.Errorf("incomingcall event %v", ev)
	}
	return callID
}

// hears waits until p hears freqHz in its latest 100 ms.
func hears(t *testing.T, p *testphone.Phone, freqHz float64) {
	t.Helper()
	mark := p.Mark()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := p.Mark(); m-mark >= audioWindow && audiotest.LevelDBFS(p.RecordingSince(m-audioWindow), freqHz, 8000) > audioOn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the phone never heard %v Hz", freqHz)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestApplicationAnswersAndAddsToRoom is the inbound flow of a Catapult
// conferencing app: a call to the application's number rings, the
// application gets incomingcall, answers with {"state":"active"}, gets
// answer, and adds the call to a conference where a member is already
// talking; the caller hears the room and the room hears the caller.
// Until it is added, the answered call is in no conference and hears
// nothing of the room.
func TestApplicationAnswersAndAddsToRoom(t *testing.T) {
	rg := newAppRig(t, "32600-32699", "+15556660001", false)
	confID := rg.create("/conferences", map[string]any{"from": "+15556660002"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	member, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: "+15556660002",
		Source: audiotest.ToneSource(1000, -15, 8000)})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)

	dialed := rg.dial(t, 600)
	callID := rg.incoming(t)
	_, body := rg.alice.do("GET", "/calls/"+callID, nil)
	if !strings.Contains(string(body), `"state":"started"`) || !strings.Contains(string(body), `"direction":"in"`) {
		t.Errorf("ringing call: %s", body)
	}
	select {
	case res := <-dialed:
		t.Fatalf("the call was answered before the application decided: %v", res.err)
	case <-time.After(300 * time.Millisecond):
	}
	if resp, b := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "active"}); resp.StatusCode != 200 {
		t.Fatalf("answer: %d %s", resp.StatusCode, b)
	}
	res := <-dialed
	if res.err != nil {
		t.Fatalf("dial: %v", res.err)
	}
	caller := res.p
	rg.events.wait(t, "answer", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "answer" && ev["callId"] == callID
	})
	_, body = rg.alice.do("GET", "/calls/"+callID, nil)
	if !strings.Contains(string(body), `"state":"active"`) || strings.Contains(string(body), "conferenceId") {
		t.Errorf("answered call: %s", body)
	}
	// Parked: the room is not heard.
	time.Sleep(500 * time.Millisecond)
	if l := audiotest.LevelDBFS(caller.RecordingSince(max(0, caller.Mark()-4*audioWindow)), 1000, 8000); l > audioSilent {
		t.Errorf("the parked caller hears the room at %.1f dBFS", l)
	}
	if resp, b := rg.alice.do("POST", "/conferences/"+confID+"/members", map[string]any{"callId": callID}); resp.StatusCode != 201 {
		t.Fatalf("add member: %d %s", resp.StatusCode, b)
	}
	hears(t, caller, 1000)
	hears(t, member, 600)
	_, body = rg.alice.do("GET", "/calls/"+callID, nil)
	if !strings.Contains(string(body), `"conferenceId":"`+confID+`"`) {
		t.Errorf("member call: %s", body)
	}
	// The event order the application saw.
	i, _ := rg.events.find(func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" })
	j, _ := rg.events.find(func(ev map[string]any) bool { return ev["eventType"] == "answer" })
	if i < 0 || j < i {
		t.Errorf("incomingcall at %d, answer at %d", i, j)
	}
	// Answering again is harmless; rejecting now is refused.
	if resp, _ := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "active"}); resp.StatusCode != 200 {
		t.Errorf("second answer: %d", resp.StatusCode)
	}
	if resp, _ := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": "rejected"}); resp.StatusCode != 403 {
		t.Errorf("reject an answered call: %d", resp.StatusCode)
	}
}

// TestApplicationRejectsHangsUpOrTimesOut: the caller gets 603 when the
// application rejects, 480 when it hangs up before answering and 480 when
// it never decides; each time the application gets a hangup event with
// the cause. Bob cannot decide Alice's call. A caller that cancels while
// it rings ends the call with ORIGINATOR_CANCEL.
func TestApplicationRejectsHangsUpOrTimesOut(t *testing.T) {
	rg := newAppRig(t, "32700-32799", "+15556660010", false, "--incoming-call-timeout", "2s")
	bob := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-bob", rg.r.HTTP), token: "bob-token", secret: "bob-secret"}
	for _, c := range []struct {
		name, state string
		status      int
		cause       string
	}{
		{"rejected", "rejected", 603, "CALL_REJECTED"},
		{"hung up", "completed", 480, "NORMAL_CLEARING"},
		{"no answer", "", 480, "NO_ANSWER"},
	} {
		n := rg.events.count(func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" })
		start := time.Now()
		dialed := rg.dial(t, 600)
		var callID string
		deadline := time.Now().Add(10 * time.Second)
		for callID == "" {
			rg.events.mu.Lock()
			seen := 0
			for _, ev := range rg.events.evs {
				if ev["eventType"] == "incomingcall" {
					if seen == n {
						callID, _ = ev["callId"].(string)
					}
					seen++
				}
			}
			rg.events.mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("%s: no incomingcall", c.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if resp, _ := bob.do("POST", "/calls/"+callID, map[string]any{"state": "active"}); resp.StatusCode != 404 {
			t.Errorf("%s: Bob answers Alice's call: %d", c.name, resp.StatusCode)
		}
		if c.state != "" {
			if resp, b := rg.alice.do("POST", "/calls/"+callID, map[string]any{"state": c.state}); resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", c.name, resp.StatusCode, b)
			}
		}
		res := <-dialed
		var se *testphone.StatusError
		if !errors.As(res.err, &se) || se.Code != c.status {
			t.Errorf("%s: dial gave %v, want %d", c.name, res.err, c.status)
		}
		// The timeout runs from the INVITE, which came after start.
		if c.state == "" && time.Since(start) < 2*time.Second {
			t.Errorf("no answer: turned away after %v, want the 2 s timeout", time.Since(start))
		}
		_, ev := rg.events.wait(t, "hangup", 10*time.Second, func(ev map[string]any) bool {
			return ev["eventType"] == "hangup" && ev["callId"] == callID
		})
		if ev["cause"] != c.cause {
			t.Errorf("%s: hangup cause %v, want %s", c.name, ev["cause"], c.cause)
		}
		_, body := rg.alice.do("GET", "/calls/"+callID, nil)
		if !strings.Contains(string(body), `"state":"completed"`) {
			t.Errorf("%s: call %s", c.name, body)
		}
	}

	// The caller gives up while it rings (CANCEL): ORIGINATOR_CANCEL. It
	// gives up once the application heard of the call, which comes after
	// the 180: so the phone has a provisional and CANCELs.
	n := rg.events.count(func(ev map[string]any) bool { return ev["eventType"] == "hangup" })
	calls := rg.events.count(func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gaveUp := make(chan error, 1)
	go func() {
		_, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: rg.number})
		gaveUp <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for rg.events.count(func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" }) == calls {
		if time.Now().After(deadline) {
			t.Fatal("no incomingcall for the call to cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: %v", err)
	}
	for rg.events.count(func(ev map[string]any) bool { return ev["eventType"] == "hangup" }) == n {
		if time.Now().After(deadline) {
			t.Fatal("no hangup event after the CANCEL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rg.events.count(func(ev map[string]any) bool {
		return ev["eventType"] == "hangup" && ev["cause"] == "ORIGINATOR_CANCEL"
	}); got != 1 {
		t.Errorf("hangup events with ORIGINATOR_CANCEL: %d", got)
	}
}

// TestApplicationAutoAnswer: with autoAnswer the call is answered at once;
// the application gets incomingcall and then answer, and the parked call
// still joins a room by POST /members. Deleting the number's assignment
// gives the number back to ordinary routing (auto-create).
func TestApplicationAutoAnswer(t *testing.T) {
	rg := newAppRig(t, "32800-32899", "+15556660020", true)
	res := <-rg.dial(t, 600)
	if res.err != nil {
		t.Fatalf("dial: %v", res.err)
	}
	callID := rg.incoming(t)
	rg.events.wait(t, "answer", 10*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "answer" && ev["callId"] == callID
	})
	confID := rg.create("/conferences", map[string]any{"from": "+15556660021"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	member, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: "+15556660021",
		Source: audiotest.ToneSource(1000, -15, 8000)})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	if resp, b := rg.alice.do("POST", "/conferences/"+confID+"/members", map[string]any{"callId": callID}); resp.StatusCode != 201 {
		t.Fatalf("add member: %d %s", resp.StatusCode, b)
	}
	hears(t, res.p, 1000)
	hears(t, member, 600)

	// Unassigned, the number is an ordinary dial-in number again.
	if resp, b := rg.alice.do("POST", "/phoneNumbers/"+rg.number, map[string]any{"applicationId": ""}); resp.StatusCode != 200 {
		t.Fatalf("unassign: %d %s", resp.StatusCode, b)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	p, err := testphone.Dial(ctx, testphone.Options{Target: rg.r.SIPUDP.String(), User: rg.number})
	cancel()
	if err != nil {
		t.Fatalf("dial the unassigned number: %v", err)
	}
	t.Cleanup(p.Close)
	_, body := rg.alice.do("GET", "/conferences", nil)
	if !strings.Contains(string(body), `"from":"`+rg.number+`"`) {
		t.Errorf("no room auto-created on the unassigned number for its owner: %s", body)
	}
}

// TestNodeSDKApplications runs node-bandwidth 4.0.0, unchanged, through
// applications, phone numbers and the inbound flow
// (testdata/sdk/applications.js): the script says DIAL, a phone dials the
// number, and the script answers it and adds it to a room (the phone is
// answered and stays up), then rejects a second call (603).
func TestNodeSDKApplications(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install Node.js (20 or later) to run the node-bandwidth SDK test")
	}
	const repo = "../.."
	if _, err := os.Stat(filepath.Join(repo, "testdata/sdk/node_modules/node-bandwidth/package.json")); err != nil {
		t.Fatalf("testdata/sdk/node_modules/node-bandwidth is missing: run npm ci --prefix testdata/sdk (%v)", err)
	}
	events := &audioEvents{}
	evSrv := newTargetServer(events)
	t.Cleanup(evSrv.Close)
	r := startChorus(t, "32900-32999")
	const number = "+15556660030"

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/sdk/applications.js")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+r.HTTP.String(),
		"USER_ID=u-alice", "TOKEN=alice-token", "SECRET=alice-secret",
		"OTHER_ID=u-bob", "OTHER_TOKEN=bob-token", "OTHER_SECRET=bob-secret",
		"CALLBACK_URL="+evSrv.URL+"/app", "NUMBER="+number, "FROM=+15556660031")
	var stderr, output syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	log := func() string {
		return fmt.Sprintf("\n--- applications.js stdout ---\n%s--- applications.js stderr ---\n%s", output.String(), stderr.String())
	}
	var dials []chan dialResult
	passed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		output.Write([]byte(line + "\n"))
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "DIAL":
			ch := make(chan dialResult, 1)
			dials = append(dials, ch)
			go func() {
				dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
				defer dcancel()
				p, err := testphone.Dial(dctx, testphone.Options{Target: r.SIPUDP.String(), User: f[1]})
				ch <- dialResult{p, err}
			}()
		case len(f) == 1 && f[0] == "PASS":
			passed = true
		}
	}
	werr := cmd.Wait()
	if werr != nil || !passed {
		t.Fatalf("applications.js: %v (PASS printed: %v)%s", werr, passed, log())
	}
	if len(dials) != 2 {
		t.Fatalf("%d DIAL lines, want 2%s", len(dials), log())
	}
	first, second := <-dials[0], <-dials[1]
	if first.err != nil {
		t.Errorf("the answered call: %v", first.err)
	} else {
		first.p.Close()
	}
	var se *testphone.StatusError
	if !errors.As(second.err, &se) || se.Code != 603 {
		t.Errorf("the rejected call: %v, want 603", second.err)
	}
	if n := events.count(func(ev map[string]any) bool { return ev["eventType"] == "incomingcall" }); n != 2 {
		t.Errorf("%d incomingcall events, want 2", n)
	}
}

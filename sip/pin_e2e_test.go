package sip

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// Room PIN and lock end to end (issue 11). The prompts are the bridge's
// tone prompts (440, 660 and 880 Hz); the callers' tones are of prime
// period, far from those, so that neither is read as the other.
var (
	pinTalkerTone = 8000.0 / 7  // ≈1143 Hz: the member already in the room
	pinCallerTone = 8000.0 / 17 // ≈471 Hz: the caller who must enter the PIN
)

// pinRoom is a room made as the API makes it, with a PIN, and its events.
func pinRoom(t *testing.T, tb *testBridge, from, pin string) (*bridge.Conference, *eventLog) {
	t.Helper()
	events := &eventLog{}
	tb.b.SetEventSink(events)
	conf, err := tb.b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", From: from, PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	return conf, events
}

// enterPIN presses keys one by one, by RFC 4733 ("rtp") or SIP INFO.
func enterPIN(t *testing.T, p *testphone.Phone, method, keys string) {
	t.Helper()
	for _, k := range keys {
		press(t, p, method, k)
	}
}

// memberEvents counts the conference-member events of a call in a state.
func (l *eventLog) memberEvents(callID, state string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.evs {
		if ev.Type == bridge.EventConferenceMember && ev.CallID == callID && ev.State == state {
			n++
		}
	}
	return n
}

// TestPINJoin: a caller to a room with a PIN hears the prompt and nothing
// of the room, is not heard in it, and its keys do not act until it has
// joined; a wrong entry costs a try, the right PIN and # let it in, and
// then it hears the room and the room hears it. By RFC 4733 and by SIP
// INFO.
func TestPINJoin(t *testing.T) {
	for i, method := range []string{"rtp", "info"} {
		t.Run(method, func(t *testing.T) {
			tb := startBridge(t, bridge.Config{}, 33000+i*100, 33099+i*100)
			conf, events := pinRoom(t, tb, "7000", "4711")

			// The first caller gets in with the PIN: the room's talker.
			a := tb.dial(t, testphone.Options{User: "7000", Source: audiotest.ToneSource(pinTalkerTone, -20, 8000)})
			waitFor(t, "A waiting", func() bool { return conf.Info().Waiting == 1 })
			if conf.Info().ActiveMembers != 0 || len(conf.Members()) != 0 || conf.State() != bridge.StateCreated {
				t.Fatalf("a caller waiting for the PIN is a member: %+v", conf.Info())
			}
			enterPIN(t, a, method, "4711#")
			waitFor(t, "A joined", func() bool { return conf.Info().ActiveMembers == 1 })

			b := tb.dial(t, testphone.Options{User: "7000", Source: audiotest.ToneSource(pinCallerTone, -20, 8000)})
			waitFor(t, "B waiting", func() bool { return conf.Info().Waiting == 1 })
			recs := listen(1500*time.Millisecond, b, a)
			if got := audiotest.RMSDBFS(recs[0]); got < -40 {
				t.Errorf("B heard %.1f dBFS RMS while waiting, want the prompt", got)
			}
			if got := level(recs[0], pinTalkerTone); got > -60 {
				t.Errorf("B heard the room's talker at %.1f dBFS before joining", got)
			}
			if got := level(recs[1], pinCallerTone); got > -60 {
				t.Errorf("the room heard B at %.1f dBFS before it joined", got)
			}
			if n := len(conf.Members()); n != 1 {
				t.Errorf("%d members listed while B waits, want 1", n)
			}

			// 0 is mute in the room's key map: before joining it is only a
			// (wrong) entry, and B is not muted once in.
			enterPIN(t, b, method, "0#")
			if conf.Info().Waiting != 1 {
				t.Fatal("one wrong entry ended the wait")
			}
			enterPIN(t, b, method, "4711#")
			waitFor(t, "B joined", func() bool { return conf.Info().ActiveMembers == 2 })
			for _, m := range conf.Members() {
				if m.Muted() || m.Held() {
					t.Errorf("member %s muted %v held %v: a key acted before it joined", m.ID(), m.Muted(), m.Held())
				}
			}
			time.Sleep(500 * time.Millisecond) // the gate opens, buffers prime
			recs = listen(1500*time.Millisecond, b, a)
			if got := level(recs[0], pinTalkerTone); math.Abs(got+20) > 1.5 {
				t.Errorf("B hears the room's talker at %.1f dBFS once in, want -20", got)
			}
			if got := level(recs[1], pinCallerTone); math.Abs(got+20) > 1.5 {
				t.Errorf("the room hears B at %.1f dBFS once in, want -20", got)
			}

			// One conference-member event per caller, when it joined.
			for _, m := range conf.Members() {
				if n := events.memberEvents(m.Call().ID(), bridge.StateActive); n != 1 {
					t.Errorf("call %s: %d conference-member active events, want 1", m.Call().ID(), n)
				}
			}
		})
	}
}

// turnedAway waits for the bridge's BYE and returns the call's hang-up
// cause.
func turnedAway(t *testing.T, tb *testBridge, p *testphone.Phone, within time.Duration) string {
	t.Helper()
	select {
	case <-p.Ended():
	case <-time.After(within):
		t.Fatalf("no BYE within %v", within)
	}
	var cause string
	waitFor(t, "the call's end", func() bool {
		for _, c := range tb.b.Calls("u-test") {
			if in := c.Info(); in.State == bridge.CallCompleted {
				cause = in.Cause
				return true
			}
		}
		return false
	})
	return cause
}

// TestPINThreeWrong: three wrong PINs end in the goodbye and a BYE, and the
// room (made through the API) is still there for the next caller.
func TestPINThreeWrong(t *testing.T) {
	tb := startBridge(t, bridge.Config{}, 33200, 33299)
	conf, events := pinRoom(t, tb, "7001", "4711")
	p := tb.dial(t, testphone.Options{User: "7001"})
	waitFor(t, "waiting", func() bool { return conf.Info().Waiting == 1 })
	enterPIN(t, p, "rtp", "1#2#")
	select {
	case <-p.Ended():
		t.Fatal("hung up after two wrong PINs")
	default:
	}
	enterPIN(t, p, "rtp", "4712#")
	if cause := turnedAway(t, tb, p, 5*time.Second); cause != bridge.CausePINFailed {
		t.Errorf("hang-up cause %q, want %q", cause, bridge.CausePINFailed)
	}
	if st := conf.State(); st != bridge.StateCreated {
		t.Errorf("a caller who never got in left the room %s", st)
	}
	if in := conf.Info(); in.Waiting != 0 || in.ActiveMembers != 0 {
		t.Errorf("after the BYE: %+v", in)
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	for _, ev := range events.evs {
		if ev.Type == bridge.EventConferenceMember {
			t.Errorf("conference-member event for a caller who never joined: %+v", ev)
		}
	}
}

// TestPINTimeout: a caller who does not enter the PIN in time hears the
// goodbye and gets a BYE; keys it pressed that were no PIN do not keep it.
func TestPINTimeout(t *testing.T) {
	tb := startBridge(t, bridge.Config{PINTimeout: 2 * time.Second}, 33300, 33399)
	conf, _ := pinRoom(t, tb, "7002", "4711")
	start := time.Now()
	p := tb.dial(t, testphone.Options{User: "7002"})
	waitFor(t, "waiting", func() bool { return conf.Info().Waiting == 1 })
	enterPIN(t, p, "rtp", "47")
	if cause := turnedAway(t, tb, p, 10*time.Second); cause != bridge.CausePINTimeout {
		t.Errorf("hang-up cause %q, want %q", cause, bridge.CausePINTimeout)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("turned away after %v, before the 2 s timeout", d)
	}
}

// TestLockedRoom: a locked room refuses a new caller with 403 Conference
// Locked while its members stay and a call added through the API still
// joins; unlocked, it takes callers again.
func TestLockedRoom(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 33400, 33499)
	conf, err := tb.b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", From: "7003"})
	if err != nil {
		t.Fatal(err)
	}
	a := tb.dial(t, testphone.Options{User: "7003", Source: audiotest.ToneSource(pinTalkerTone, -20, 8000)})
	waitFor(t, "A joined", func() bool { return conf.Info().ActiveMembers == 1 })
	conf.SetLocked(true)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = testphone.Dial(ctx, testphone.Options{User: "7003", Target: tb.udp.String()})
	cancel()
	var se *testphone.StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.Reason != "Conference Locked" {
		t.Fatalf("dial-in to a locked room: %v, want 403 Conference Locked", err)
	}
	if n := conf.Info().ActiveMembers; n != 1 {
		t.Fatalf("%d members after the refusal, want A alone", n)
	}

	// A call elsewhere, added through the API (AddMember without DialIn,
	// as POST …/members does), joins the locked room.
	b := tb.dial(t, testphone.Options{User: "7100", Source: audiotest.ToneSource(pinCallerTone, -20, 8000)})
	other := waitConference(t, tb, "7100")
	waitFor(t, "B in its own room", func() bool { return other.Info().ActiveMembers == 1 })
	if _, err := conf.AddMember(other.Members()[0].Call(), bridge.MemberOptions{}); err != nil {
		t.Fatalf("API add to a locked room: %v", err)
	}
	waitFor(t, "B added", func() bool { return conf.Info().ActiveMembers == 2 })
	time.Sleep(500 * time.Millisecond)
	recs := listen(1500*time.Millisecond, a, b)
	if got := level(recs[0], pinCallerTone); math.Abs(got+20) > 1.5 {
		t.Errorf("A hears the added member at %.1f dBFS, want -20", got)
	}
	if got := level(recs[1], pinTalkerTone); math.Abs(got+20) > 1.5 {
		t.Errorf("the added member hears A at %.1f dBFS, want -20", got)
	}

	conf.SetLocked(false)
	tb.dial(t, testphone.Options{User: "7003"})
	waitFor(t, "a caller after the unlock", func() bool { return conf.Info().ActiveMembers == 3 })
}

// TestLockWhileWaiting: a caller waiting for the PIN when the room is
// locked is turned away when it enters it.
func TestLockWhileWaiting(t *testing.T) {
	tb := startBridge(t, bridge.Config{}, 33500, 33599)
	conf, _ := pinRoom(t, tb, "7004", "4711")
	p := tb.dial(t, testphone.Options{User: "7004"})
	waitFor(t, "waiting", func() bool { return conf.Info().Waiting == 1 })
	conf.SetLocked(true)
	enterPIN(t, p, "info", "4711#")
	if cause := turnedAway(t, tb, p, 5*time.Second); cause != bridge.CauseLocked {
		t.Errorf("hang-up cause %q, want %q", cause, bridge.CauseLocked)
	}
}

// TestPINSkippedByAPIAdd: a call waiting in the lobby that the API adds to
// the room is admitted without its PIN.
func TestPINSkippedByAPIAdd(t *testing.T) {
	tb := startBridge(t, bridge.Config{}, 33600, 33699)
	conf, events := pinRoom(t, tb, "7005", "4711")
	p := tb.dial(t, testphone.Options{User: "7005"})
	waitFor(t, "waiting", func() bool { return conf.Info().Waiting == 1 })
	call := callOf(t, tb, int(p.RemoteRTPAddr().Port()))
	if call.Info().MemberID != "" {
		t.Error("a waiting call names a member id")
	}
	m, err := conf.AddMember(call, bridge.MemberOptions{})
	if err != nil || !m.Active() || m.Waiting() {
		t.Fatalf("API add of a waiting call: %v", err)
	}
	if conf.Info().ActiveMembers != 1 || call.Info().MemberID != m.ID() {
		t.Errorf("after the add: %+v, call %+v", conf.Info(), call.Info())
	}
	if n := events.memberEvents(call.ID(), bridge.StateActive); n != 1 {
		t.Errorf("%d conference-member active events, want 1", n)
	}
}

package sip

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// press sends a digit the way method says: "rtp" (RFC 4733) or "info".
func press(t *testing.T, p *testphone.Phone, method string, d rune) {
	t.Helper()
	var err error
	if method == "info" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = p.SendInfo(ctx, d)
		cancel()
	} else {
		err = p.SendDTMF(d)
	}
	// '#' may hang the call up before the phone has sent the event's
	// last packets: the digit fires on its first packet.
	if err != nil && !(d == '#' && errors.Is(err, testphone.ErrEnded)) {
		t.Fatalf("press %c by %s: %v", d, method, err)
	}
	time.Sleep(150 * time.Millisecond) // let the action apply and audio settle
}

// TestKeys drives the documented key map end to end, by RFC 4733 and by
// SIP INFO.
func TestKeys(t *testing.T) {
	for _, method := range []string{"rtp", "info"} {
		t.Run(method, func(t *testing.T) {
			tb := startBridge(t, bridge.Config{AutoCreate: true}, 26000+boolInt(method == "info")*500, 26499+boolInt(method == "info")*500)
			a := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(500, -20, 8000)})
			conf := waitConference(t, tb, "1000")
			waitFor(t, "A joined", func() bool { return conf.Info().ActiveMembers == 1 })
			memberA := conf.Members()[0]
			b := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(1000, -20, 8000)})
			waitFor(t, "two members", func() bool { return conf.Info().ActiveMembers == 2 })
			time.Sleep(300 * time.Millisecond)
			heard := func(p *testphone.Phone, f float64) float64 {
				return level(listen(700*time.Millisecond, p)[0], f)
			}
			base := heard(b, 500)
			if math.Abs(base+20) > 1.5 {
				t.Fatalf("A heard at %.1f dBFS before any key, want -20", base)
			}

			press(t, a, method, '3') // talk volume up
			if d := heard(b, 500) - base; math.Abs(d-3) > 0.7 {
				t.Errorf("after 3: A is %.1f dB louder, want 3", d)
			}
			press(t, a, method, '2') // reset
			if d := heard(b, 500) - base; math.Abs(d) > 0.7 {
				t.Errorf("after 2: A is %.1f dB off the default", d)
			}

			press(t, a, method, '0') // mute
			if !memberA.Muted() {
				t.Error("after 0 the member is not muted in the API state")
			}
			time.Sleep(450 * time.Millisecond) // gate hangover
			if got := heard(b, 500); got > -60 {
				t.Errorf("after 0: A still heard at %.1f dBFS", got)
			}
			press(t, a, method, '0') // unmute
			if got := heard(b, 500); math.Abs(got-base) > 1 {
				t.Errorf("after 0 again: A heard at %.1f dBFS, want %.1f", got, base)
			}

			press(t, a, method, '6') // receive volume up
			rxBase := level(listen(700*time.Millisecond, a)[0], 1000)
			if d := rxBase - base; math.Abs(d-3) > 0.7 {
				t.Errorf("after 6: A hears B %.1f dB louder, want 3", d)
			}
			press(t, a, method, '5')

			press(t, a, method, '*') // hold: mute and deaf
			if !memberA.Held() {
				t.Error("after * the member is not held in the API state")
			}
			time.Sleep(450 * time.Millisecond)
			recs := listen(700*time.Millisecond, a, b)
			if got := audiotest.RMSDBFS(recs[0]); got > -60 {
				t.Errorf("after *: A still hears %.1f dBFS", got)
			}
			if got := level(recs[1], 500); got > -60 {
				t.Errorf("after *: A still heard at %.1f dBFS", got)
			}
			press(t, a, method, '*')

			// 9 makes the microphone less sensitive: a quiet talker that
			// passes the default gate is gated.
			b.SetSource(audiotest.ToneSource(1000, -43, 8000))
			time.Sleep(300 * time.Millisecond)
			if got := heard(a, 1000); math.Abs(got+43) > 2 {
				t.Fatalf("quiet talker heard at %.1f dBFS by default, want -43", got)
			}
			press(t, b, method, '9')
			time.Sleep(450 * time.Millisecond)
			if got := heard(a, 1000); got > -60 {
				t.Errorf("after 9: quiet talker still heard at %.1f dBFS", got)
			}

			press(t, a, method, '#') // leave
			select {
			case <-a.Ended():
			case <-time.After(5 * time.Second):
				t.Fatal("after #: no BYE")
			}
			if memberA.Active() {
				t.Error("after #: member still active")
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// eventLog records the bridge's events.
type eventLog struct {
	mu  sync.Mutex
	evs []bridge.Event
}

func (l *eventLog) Publish(ev bridge.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) digits() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := ""
	for _, ev := range l.evs {
		if ev.Type == bridge.EventDTMF {
			s += ev.Digit
		}
	}
	return s
}

// TestPassthruDigits: in passthru_digits no key acts; each digit becomes a
// dtmf event, exactly once, whichever way it came.
func TestPassthruDigits(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 27000, 27499)
	events := &eventLog{}
	tb.b.SetEventSink(events)
	conf, err := tb.b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", From: "5000", Profile: bridge.ProfilePassthruDigits})
	if err != nil {
		t.Fatal(err)
	}
	a := tb.dial(t, testphone.Options{User: "5000"})
	waitFor(t, "member", func() bool { return conf.Info().ActiveMembers == 1 })
	for _, d := range "0*#" {
		press(t, a, "rtp", d)
	}
	press(t, a, "info", '7')
	waitFor(t, "four digits", func() bool { return len(events.digits()) >= 4 })
	time.Sleep(200 * time.Millisecond)
	if got := events.digits(); got != "0*#7" {
		t.Errorf("dtmf events %q, want 0*#7", got)
	}
	m := conf.Members()[0]
	if m.Muted() || m.Held() || !m.Active() {
		t.Error("a key acted in passthru_digits")
	}
}

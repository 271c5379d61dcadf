package bridge

import (
	"net"
	"sync"
	"testing"
	"time"

	"chorus/media"
)

// fakeTimers is Config.AfterFunc for tests: timers fire when the test
// says.
type fakeTimers struct {
	mu sync.Mutex
	ts []*fakeTimer
}

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) Timer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{d: d, f: f}
	ft.ts = append(ft.ts, t)
	return t
}

// fire runs the last timer armed (as if it fired even if stopped: a stale
// timer must do nothing) and returns its duration.
func (ft *fakeTimers) fire(i int) time.Duration {
	ft.mu.Lock()
	t := ft.ts[i]
	ft.mu.Unlock()
	t.f()
	return t.d
}

func (ft *fakeTimers) count() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.ts)
}

type eventSink struct {
	mu  sync.Mutex
	evs []Event
}

func (s *eventSink) Publish(ev Event) {
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.mu.Unlock()
}

func (s *eventSink) gathers() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, ev := range s.evs {
		if ev.Type == EventGather {
			out = append(out, ev)
		}
	}
	return out
}

// parkedCall is an answered call in no conference with a real session.
func parkedCall(t *testing.T, cfg Config) (*Call, *eventSink) {
	t.Helper()
	sink := &eventSink{}
	b := New(cfg, nil, sink)
	b.manualClock = true
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := media.NewSession(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	c := b.NewCall("u-test", "a", "b", DirectionIn, &fakeLeg{sess: sess}, Callback{Tag: "call-tag"})
	c.Answered()
	return c, sink
}

// TestGatherKeys runs the gather state machine on keys and timers: max
// digits, a terminating digit (not among the digits), the inter-digit
// timeout re-armed by each key (a stale timer does nothing), hang-up,
// replace and stop, each with one event.
func TestGatherKeys(t *testing.T) {
	ft := &fakeTimers{}
	call, sink := parkedCall(t, Config{AfterFunc: ft.afterFunc})
	check := func(g *Gather, reason GatherReason, digits string) {
		t.Helper()
		in := g.Info()
		if in.State != GatherCompleted || in.Reason != reason || in.Digits != digits {
			t.Errorf("gather %+v, want %s %q", in, reason, digits)
		}
		evs := sink.gathers()
		last := evs[len(evs)-1]
		if last.GatherID != g.ID() || last.Reason != reason || last.Digits != digits || last.CallID != call.ID() {
			t.Errorf("event %+v, want %s %q of %s", last, reason, digits, g.ID())
		}
	}
	g, err := call.StartGather(GatherOptions{MaxDigits: 3, TerminatingDigits: "#"})
	if err != nil {
		t.Fatal(err)
	}
	if !call.Parked() || call.Info().ConferenceID != "" {
		t.Fatalf("the call is not parked out of sight: %+v", call.Info())
	}
	for _, d := range "1234" {
		call.Digit(d)
	}
	check(g, GatherMaxDigits, "123")
	if n := len(sink.gathers()); n != 1 {
		t.Fatalf("%d gather events", n)
	}
	// 4 found no gather: a dtmf event.

	g, _ = call.StartGather(GatherOptions{TerminatingDigits: "*#"})
	call.Digit('9')
	call.Digit('*')
	check(g, GatherTerminatingDigit, "9")

	n := ft.count()
	g, _ = call.StartGather(GatherOptions{InterDigitTimeout: 2 * time.Second})
	call.Digit('5') // re-arms: the first timer is stale
	if d := ft.fire(n); d != 2*time.Second || g.Info().State != GatherCreated {
		t.Fatalf("stale timer (%v) ended the gather: %+v", d, g.Info())
	}
	ft.fire(ft.count() - 1)
	check(g, GatherInterDigitTimeout, "5")

	g, _ = call.StartGather(GatherOptions{})
	g2, _ := call.StartGather(GatherOptions{Tag: "second"})
	check(g, GatherReplaced, "")
	call.Digit('7')
	g2.Stop()
	check(g2, GatherStopped, "7")
	if ev := sink.gathers()[len(sink.gathers())-1]; ev.Tag != "second" {
		t.Errorf("tag %q", ev.Tag)
	}

	g, _ = call.StartGather(GatherOptions{})
	call.Digit('3')
	call.Ended("hangup")
	check(g, GatherHungUp, "3")
	if _, err := call.StartGather(GatherOptions{}); err == nil {
		t.Error("gather on an ended call")
	}
	if err := call.SendDTMF("1"); err == nil {
		t.Error("DTMF to an ended call")
	}
	var dtmf int
	for _, ev := range sink.evs {
		if ev.Type == EventDTMF && ev.Digit == "4" && ev.CallID == call.ID() {
			dtmf++
		}
	}
	if dtmf != 1 {
		t.Errorf("%d dtmf events for the digit no gather took, want 1", dtmf)
	}
}

func TestValidDigits(t *testing.T) {
	for s, want := range map[string]bool{"": true, "0123456789*#ABCD": true, "a": false, "1 ": false, "E": false, "é": false} {
		if ValidDigits(s) != want {
			t.Errorf("ValidDigits(%q) = %v", s, !want)
		}
	}
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"chorus/media"
)

// eventRec keeps the events a bridge publishes.
type eventRec struct {
	mu  sync.Mutex
	evs []Event
}

func (r *eventRec) Publish(ev Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *eventRec) of(typ string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// TestRegistry: numbers are held once across users, caps are per user,
// an application is routed to only while assigned, and deleting it
// unassigns its numbers.
func TestRegistry(t *testing.T) {
	b := New(Config{MaxApplicationsPerUser: 1, MaxNumbersPerUser: 2, AutoCreate: true}, nil, nil)
	app, err := b.CreateApplication("u-a", ApplicationOptions{Name: "x", Callback: Callback{URL: "http://127.0.0.1/x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateApplication("u-a", ApplicationOptions{}); !errors.Is(err, ErrLimit) {
		t.Errorf("second application: %v, want ErrLimit", err)
	}
	if _, err := b.CreateApplication("u-b", ApplicationOptions{}); err != nil {
		t.Errorf("another user's first application: %v", err)
	}
	if _, err := b.AllocateNumber("u-b", "100", NumberOptions{ApplicationID: app.ID()}); !errors.Is(err, ErrNotFound) {
		t.Errorf("assigning another user's application: %v, want ErrNotFound", err)
	}
	n, err := b.AllocateNumber("u-a", "100", NumberOptions{ApplicationID: app.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AllocateNumber("u-b", "100", NumberOptions{}); !errors.Is(err, ErrNumberTaken) {
		t.Errorf("a held number: %v, want ErrNumberTaken", err)
	}
	if _, err := b.AllocateNumber("u-a", "101", NumberOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AllocateNumber("u-a", "102", NumberOptions{}); !errors.Is(err, ErrLimit) {
		t.Errorf("third number: %v, want ErrLimit", err)
	}
	if r, ok := b.RouteApplication("100"); !ok || r.App != app || r.Number != n {
		t.Errorf("route 100: %+v %v", r, ok)
	}
	for _, num := range []string{"101", "999", "", "conf-x"} {
		if _, ok := b.RouteApplication(num); ok {
			t.Errorf("%q routes to an application", num)
		}
	}
	if got, ok := b.PhoneNumber("100"); !ok || got != n {
		t.Error("lookup by number")
	}
	if err := b.DeleteApplication(app.ID()); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.RouteApplication("100"); ok || n.Info().ApplicationID != "" {
		t.Error("a deleted application's number still routes to it")
	}
	b.ReleaseNumber(n)
	if _, err := b.AllocateNumber("u-b", "100", NumberOptions{}); err != nil {
		t.Errorf("a released number: %v", err)
	}
}

// newAppCall makes an application call with a real media session whose
// phone is conn, as the SIP side does.
func newAppCall(t *testing.T, b *Bridge, app *Application) (*Call, *peer) {
	t.Helper()
	number := fmt.Sprintf("+1555000%04d", len(b.PhoneNumbers(app.UserID())))
	n, err := b.AllocateNumber(app.UserID(), number, NumberOptions{ApplicationID: app.ID()})
	if err != nil {
		t.Fatal(err)
	}
	rt, ok := b.RouteApplication(n.Number())
	if !ok {
		t.Fatal("no route")
	}
	r := &room{t: t, b: b, now: time.Now()}
	p := r.joinParked(rt)
	return p.call, p
}

// joinParked makes a caller of an application call, not yet answered.
func (r *room) joinParked(rt AppRoute) *peer {
	p := r.newPeer(media.PCMU, nil)
	p.call = r.b.NewAppCall(rt, "caller", rt.Number.Number(), p.leg)
	return p
}

// TestAppCallDecisions: the decision reaches the waiting SIP side once;
// a hang-up while ringing is a decision too; a decision after the wait
// ended is refused; an ordinary call has no decision to take.
func TestAppCallDecisions(t *testing.T) {
	ev := &eventRec{}
	b := New(Config{}, nil, ev)
	app, _ := b.CreateApplication("u-a", ApplicationOptions{})
	call, _ := newAppCall(t, b, app)
	call.Offer()
	if in := ev.of(EventIncomingCall); len(in) != 1 || in[0].ApplicationID != app.ID() || in[0].CallID != call.ID() || in[0].UserID != "u-a" {
		t.Errorf("incomingcall: %+v", in)
	}
	if err := call.Decide(DecisionReject); err != nil {
		t.Fatal(err)
	}
	if err := call.Decide(DecisionAnswer); !errors.Is(err, ErrCallNotRinging) {
		t.Errorf("second decision: %v", err)
	}
	if d := call.AwaitDecision(context.Background(), time.Second); d != DecisionReject {
		t.Errorf("decision %v", d)
	}

	call2, _ := newAppCall(t, b, app)
	_ = call2.Hangup(context.Background(), "NORMAL_CLEARING")
	if d := call2.AwaitDecision(context.Background(), time.Second); d != DecisionHangup {
		t.Errorf("hang-up while ringing: %v", d)
	}

	call3, _ := newAppCall(t, b, app)
	if d := call3.AwaitDecision(context.Background(), 10*time.Millisecond); d != DecisionNone {
		t.Errorf("timeout: %v", d)
	}
	if err := call3.Decide(DecisionAnswer); !errors.Is(err, ErrCallNotRinging) {
		t.Errorf("a decision after the timeout: %v", err)
	}
	plain := b.NewCall("u-a", "x", "y", DirectionIn, nil, Callback{})
	if err := plain.Decide(DecisionAnswer); !errors.Is(err, ErrCallNotRinging) {
		t.Errorf("deciding an ordinary call: %v", err)
	}
}

// TestParkedCall: an answered application call is in no conference; its
// keys are dtmf events of the call; it hears nothing but is drained; the
// RTP timeout ends it if it stops sending; a member add moves it into a
// room, where it is heard, and its internal room (callmedia.go) empties
// without an event.
func TestParkedCall(t *testing.T) {
	ev := &eventRec{}
	b := New(Config{RTPTimeout: time.Second}, nil, ev)
	b.manualClock = true
	app, _ := b.CreateApplication("u-a", ApplicationOptions{})
	call, p := newAppCall(t, b, app)
	p.source = tone(700, -10)
	if err := call.Park(); !errors.Is(err, ErrCallNotActive) {
		t.Errorf("parking a ringing call: %v", err)
	}
	call.Answered()
	if err := call.Park(); err != nil {
		t.Fatal(err)
	}
	if !call.Parked() || call.Info().ConferenceID != "" || call.Info().MemberID != "" {
		t.Fatalf("parked call: %+v", call.Info())
	}
	hold := call.Member().conf
	if _, listed := b.Conference(hold.ID()); listed || len(b.Conferences("u-a")) != 0 {
		t.Error("the holding room is listed")
	}
	now := time.Now()
	tick := func(n int, send bool) {
		for range n {
			if send {
				p.send()
			}
			now = now.Add(TickInterval)
			hold.mixOnce(now)
			p.receive()
		}
	}
	tick(25, true)
	call.Digit('7')
	if d := ev.of(EventDTMF); len(d) != 1 || d[0].CallID != call.ID() || d[0].Digit != "7" || d[0].ConferenceID != "" {
		t.Errorf("dtmf of a parked call: %+v", d)
	}
	// A gather on the parked call takes its keys: no dtmf event then
	// (main's one parked state, callmedia.go, serves application calls).
	g, err := call.StartGather(GatherOptions{MaxDigits: 2})
	if err != nil {
		t.Fatal(err)
	}
	call.Digit('4')
	call.Digit('2')
	if got := g.Info(); got.Digits != "42" || got.Reason != GatherMaxDigits {
		t.Errorf("gather of a parked call: %+v", got)
	}
	if d := ev.of(EventDTMF); len(d) != 1 {
		t.Errorf("keys of a gather became dtmf events: %+v", d)
	}

	r := newRoom(t, Config{})
	r.b = b
	conf, err := b.CreateConference(ConferenceOptions{UserID: "u-a"})
	if err != nil {
		t.Fatal(err)
	}
	r.conf = conf
	other := r.join(media.PCMU, tone(400, -10))
	if _, err := conf.AddMember(call, MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	if call.Parked() || call.Info().ConferenceID != conf.ID() || len(*hold.members.Load()) != 0 {
		t.Fatalf("after the move: parked %v, %+v, holding room has %d members", call.Parked(), call.Info(), len(*hold.members.Load()))
	}
	for _, e := range ev.of(EventConference) {
		if e.ConferenceID == hold.ID() {
			t.Errorf("an event of the holding room: %+v", e)
		}
	}
	r.peers = append(r.peers, p)
	r.step(25)
	m := r.mark()
	r.step(25)
	if got := level(other.rec[m[0]:], 700); got < -12 {
		t.Errorf("the room hears the moved call at %.1f dBFS", got)
	}

	// Another parked call that falls silent is ended by the RTP timeout.
	call2, p2 := newAppCall(t, b, app)
	call2.Answered()
	if err := call2.Park(); err != nil {
		t.Fatal(err)
	}
	hold2 := call2.Member().conf
	now2 := time.Now()
	p2.leg.sess.SetClock(func() time.Time { return now2 })
	for range 100 { // 2 s of silence from the phone
		now2 = now2.Add(TickInterval)
		hold2.mixOnce(now2)
	}
	if cause := waitHungUp(t, p2); cause != CauseRTPTimeout {
		t.Errorf("silent parked call ended with %q", cause)
	}
	if h := ev.of(EventHangup); len(h) == 0 || h[len(h)-1].CallID != call2.ID() || h[len(h)-1].ConferenceID != "" {
		t.Errorf("hangup of the parked call: %+v", h)
	}
}

package bridge

import (
	"context"
	"fmt"
	"time"
)

// Incoming calls of applications (issue 13; spec §5 "How a call becomes
// a member", inbound). A dial-in to a number assigned to an application
// rings while an incomingcall event tells the application; the SIP side
// waits for the application's Decision (or answers at once with
// autoAnswer). An answered call joins no conference: the SIP side parks
// it at once with Call.Park (callmedia.go), the one mechanism for every
// call in no conference: its socket is drained on the mixer clock, its
// RTP timeout applies, its keys go to a running gather or become dtmf
// events of the call, and it hears only what is played to it. POST
// /conferences/{id}/members {callId} moves it into a real room, with no
// gap and no second answer.

// EventIncomingCall is raised when a call to an application's number
// arrives (Catapult's incomingcall).
const EventIncomingCall = "incomingcall"

// Decision is what an application decided about its ringing call.
type Decision uint8

// Decisions.
const (
	DecisionNone   Decision = iota // no decision: the wait ended otherwise
	DecisionAnswer                 // {"state":"active"}: answer (200 OK)
	DecisionReject                 // {"state":"rejected"}: decline (603)
	DecisionHangup                 // {"state":"completed"} before the answer
)

// Hang-up causes of application calls that were never answered.
const (
	CauseRejected         = "CALL_REJECTED" // the application rejected it
	CauseNoAnswer         = "NO_ANSWER"     // the application did not decide in time
	CauseNormalClearing   = "NORMAL_CLEARING"
	CauseOriginatorCancel = "ORIGINATOR_CANCEL" // the caller gave up while it rang
)

// NewAppCall registers an inbound call routed to an application (see
// RouteApplication). It belongs to the application's user, and its events
// go to the application unless the call is given a callback of its own.
func (b *Bridge) NewAppCall(r AppRoute, from, to string, leg Leg) *Call {
	c := b.NewCall(r.App.userID, from, to, DirectionIn, leg, Callback{})
	c.mu.Lock()
	c.appID = r.App.id
	c.decide = make(chan Decision, 1)
	c.mu.Unlock()
	return c
}

// ApplicationID returns the application the call came in for, "" if none.
func (c *Call) ApplicationID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appID
}

// Offer tells the application that its call arrived: the incomingcall
// event.
func (c *Call) Offer() {
	c.mu.Lock()
	ev := Event{Type: EventIncomingCall, UserID: c.userID, CallID: c.id, From: c.from, To: c.to,
		ApplicationID: c.appID, State: CallStarted}
	c.mu.Unlock()
	c.b.publish(ev)
}

// Decide delivers the application's decision about its ringing call. It
// is ErrCallNotRinging for a call that is not an application's, or that
// was answered, decided or ended already.
func (c *Call) Decide(d Decision) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decide == nil || c.state != CallStarted || c.decided {
		return fmt.Errorf("decide %s: %w", c.id, ErrCallNotRinging)
	}
	c.decided = true
	c.decide <- d
	return nil
}

// AwaitDecision waits, for at most timeout, for the application's
// decision, or until ctx ends (the caller cancelled); DecisionNone then.
// The SIP side calls it while the call rings.
func (c *Call) AwaitDecision(ctx context.Context, timeout time.Duration) Decision {
	c.mu.Lock()
	ch := c.decide
	c.mu.Unlock()
	if ch == nil {
		return DecisionAnswer
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case d := <-ch:
		return d
	case <-t.C:
	case <-ctx.Done():
	}
	// No decision may count any more: a late one gets ErrCallNotRinging.
	c.mu.Lock()
	c.decided = true
	c.mu.Unlock()
	select {
	case d := <-ch: // it came just now
		return d
	default:
	}
	return DecisionNone
}

// ringingForApp reports whether the call rings, waiting for its
// application to decide. c.mu is held.
func (c *Call) ringingForApp() bool {
	return c.decide != nil && c.state == CallStarted && !c.decided
}
